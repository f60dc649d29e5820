package main

// The `plan` object: each method checks its arguments, records one
// instruction (kind, position, text, description, args) and returns what
// Kurtosis returns, with future references `{{modhost:N:FIELD}}` for
// values known only at execution.

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

type instruction struct {
	kind        string
	position    string
	text        string
	description string
	args        *OMap
}

func (in *instruction) json() *OMap {
	m := &OMap{}
	m.Set("kind", in.kind)
	m.Set("position", in.position)
	m.Set("text", in.text)
	m.Set("description", in.description)
	m.Set("args", in.args)
	return m
}

// pcall is one call of a plan method.
type pcall struct {
	*bound
	ip     *interp
	thread *starlark.Thread
	name   string // as called (assert for verify)
	pos    string
	n      int // index of the instruction in the plan
}

func (c *pcall) future(field string) string {
	return "{{modhost:" + strconv.Itoa(c.n) + ":" + field + "}}"
}

// defaultName is a deterministic artifact or task name: prefix + 8 hex of
// sha256 over the call's position, the given parts and the number of
// earlier calls with the same position and parts (calls in a loop).
func (c *pcall) defaultName(prefix string, parts ...string) string {
	key := prefix + "\x00" + c.pos + "\x00" + strings.Join(parts, "\x00")
	occ := c.ip.nameUses[key]
	c.ip.nameUses[key] = occ + 1
	sum := sha256.Sum256([]byte(c.pos + "\x00" + strings.Join(parts, "\x00") + "\x00" + strconv.Itoa(occ)))
	return prefix + "-" + hex.EncodeToString(sum[:4])
}

func (c *pcall) errorf(format string, a ...interface{}) error {
	return fmt.Errorf("%s: %s", c.name, fmt.Sprintf(format, a...))
}

type method struct {
	name string
	kind string
	sig  *signature
	// pre may rearrange the arguments before binding.
	pre func(args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Tuple, []starlark.Tuple)
	// run returns the instruction's args, its default description and the
	// call's result.
	run func(c *pcall) (*OMap, string, starlark.Value, error)
}

type planValue struct {
	methods map[string]*starlark.Builtin
	names   []string
}

func (p *planValue) String() string        { return "<plan>" }
func (p *planValue) Type() string          { return "plan" }
func (p *planValue) Freeze()               {}
func (p *planValue) Truth() starlark.Bool  { return true }
func (p *planValue) Hash() (uint32, error) { return 0, fmt.Errorf("unhashable type: plan") }
func (p *planValue) AttrNames() []string   { return p.names }
func (p *planValue) Attr(name string) (starlark.Value, error) {
	if b, ok := p.methods[name]; ok {
		return b, nil
	}
	return nil, nil // "plan has no .NAME field or method"
}

func (ip *interp) newPlan() *planValue {
	p := &planValue{methods: map[string]*starlark.Builtin{}}
	for _, m := range planMethods() {
		m := m
		sig := m.sig.withDescription()
		p.methods[m.name] = ip.builtin(m.name, func(thread *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			if m.pre != nil {
				args, kwargs = m.pre(args, kwargs)
			}
			b, err := sig.bind(args, kwargs)
			if err != nil {
				return nil, err
			}
			c := &pcall{bound: b, ip: ip, thread: thread, name: m.name, pos: callerPos(thread), n: len(ip.instrs)}
			jargs, desc, ret, err := m.run(c)
			if err != nil {
				return nil, err
			}
			if b.isSet("description") {
				desc = b.str("description")
			}
			ip.instrs = append(ip.instrs, &instruction{
				kind: m.kind, position: c.pos, text: b.call(m.name, false), description: desc, args: jargs,
			})
			return ret, nil
		})
		p.names = append(p.names, m.name)
	}
	sort.Strings(p.names)
	return p
}

func resultDict(c *pcall, fields []string) *starlark.Dict {
	d := starlark.NewDict(len(fields))
	for _, f := range fields {
		_ = d.SetKey(str(f), str(c.future(f)))
	}
	d.Freeze()
	return d
}

func copyFrozen(d *starlark.Dict) *starlark.Dict {
	out := starlark.NewDict(d.Len())
	for _, kv := range d.Items() {
		_ = out.SetKey(kv[0], kv[1])
	}
	out.Freeze()
	return out
}

var cConfigs = cDictOf("service name to ServiceConfig", checkServiceName, cType("ServiceConfig"))

func cPair(v starlark.Value) (starlark.Value, error) {
	seq, ok := sequence(v)
	if !ok || seq.Len() != 2 {
		return nil, errWant(v, "a pair of subnetwork names")
	}
	for i := 0; i < 2; i++ {
		if _, err := cNonEmptyString(seq.Index(i)); err != nil {
			return nil, fmt.Errorf("element %d: %v", i, err)
		}
	}
	return v, nil
}

var cStoreList = cListOf("string or StoreSpec", cOr("string or StoreSpec", cNonEmptyString, cType("StoreSpec")))

func defaultCodes(codes ...int) *starlark.List {
	vs := make([]starlark.Value, len(codes))
	for i, c := range codes {
		vs[i] = starlark.MakeInt(c)
	}
	return frozenList(vs...)
}

var http2xx = defaultCodes(200, 201, 202, 203, 204, 205, 206, 207, 208, 226)

// text of a value for descriptions and print: strings raw, others as
// Starlark prints them.
func plainText(v starlark.Value) string {
	if s, ok := v.(starlark.String); ok {
		return string(s)
	}
	return v.String()
}

func nameArgs(c *pcall) (*OMap, error) {
	m := &OMap{}
	m.Set("name", c.str("name"))
	return m, nil
}

func simpleServiceMethod(name, descFmt string, after func(c *pcall)) *method {
	return &method{
		name: name, kind: name,
		sig: newSignature(name, param{name: "name", required: true, conv: cNonEmptyString}),
		run: func(c *pcall) (*OMap, string, starlark.Value, error) {
			m, _ := nameArgs(c)
			if after != nil {
				after(c)
			}
			return m, fmt.Sprintf(descFmt, c.str("name")), starlark.None, nil
		},
	}
}

func planMethods() []*method {
	verify := &method{
		name: "verify", kind: "verify",
		sig: newSignature("verify",
			param{name: "value", required: true, conv: cJSONable},
			param{name: "assertion", required: true, conv: cAssertion},
			param{name: "target_value", required: true, conv: cJSONable},
		),
		run: func(c *pcall) (*OMap, string, starlark.Value, error) {
			if err := checkTarget(c.name, c.str("assertion"), c.get("target_value")); err != nil {
				return nil, "", nil, err
			}
			v, _ := toJSON(c.get("value"))
			t, _ := toJSON(c.get("target_value"))
			m := &OMap{}
			m.Set("value", v)
			m.Set("assertion", c.str("assertion"))
			m.Set("target_value", t)
			desc := fmt.Sprintf("Verifying whether '%s' '%s' '%s'", plainText(c.get("value")), c.str("assertion"), plainText(c.get("target_value")))
			return m, desc, starlark.None, nil
		},
	}
	assert := *verify
	assert.name = "assert"
	assert.sig = newSignature("assert", verify.sig.params...)

	return []*method{
		{
			name: "add_service", kind: "add_service",
			sig: newSignature("add_service",
				param{name: "name", required: true, conv: cServiceName},
				param{name: "config", required: true, conv: cType("ServiceConfig")},
			).withAlias("service_name", "name"),
			run: func(c *pcall) (*OMap, string, starlark.Value, error) {
				name, cfg := c.str("name"), c.get("config").(*kobj)
				j, err := cfg.toJSON()
				if err != nil {
					return nil, "", nil, c.errorf("%v", err)
				}
				m := &OMap{}
				m.Set("name", name)
				m.Set("config", j)
				ports := copyFrozen(cfg.get("ports").(*starlark.Dict))
				c.ip.services[name] = ports
				svc := &serviceValue{name: name, ipAddress: c.future("ip_address"), ports: ports}
				return m, fmt.Sprintf("Adding service with name '%s' and image '%s'", name, cfg.str("image")), svc, nil
			},
		},
		{
			name: "add_services", kind: "add_services",
			sig: newSignature("add_services", param{name: "configs", required: true, conv: cConfigs}),
			run: func(c *pcall) (*OMap, string, starlark.Value, error) {
				configs := c.get("configs").(*starlark.Dict)
				j := &OMap{}
				ret := starlark.NewDict(configs.Len())
				var names []string
				for _, kv := range configs.Items() {
					name, _ := starlark.AsString(kv[0])
					cfg := kv[1].(*kobj)
					cj, err := cfg.toJSON()
					if err != nil {
						return nil, "", nil, c.errorf("%v", err)
					}
					j.Set(name, cj)
					ports := copyFrozen(cfg.get("ports").(*starlark.Dict))
					c.ip.services[name] = ports
					_ = ret.SetKey(str(name), &serviceValue{name: name, ipAddress: c.future(name + ".ip_address"), ports: ports})
					names = append(names, name)
				}
				ret.Freeze()
				m := &OMap{}
				m.Set("configs", j)
				return m, fmt.Sprintf("Adding '%d' services with names '%s'", len(names), strings.Join(names, ", ")), ret, nil
			},
		},
		{
			name: "get_service", kind: "get_service",
			sig: newSignature("get_service", param{name: "name", required: true, conv: cNonEmptyString}),
			run: func(c *pcall) (*OMap, string, starlark.Value, error) {
				name := c.str("name")
				ports, ok := c.ip.services[name]
				if !ok {
					ports = frozenDict()
				}
				m, _ := nameArgs(c)
				return m, fmt.Sprintf("Fetching service '%s'", name), &serviceValue{name: name, ipAddress: c.future("ip_address"), ports: ports}, nil
			},
		},
		simpleServiceMethod("remove_service", "Removing service '%s'", func(c *pcall) { delete(c.ip.services, c.str("name")) }),
		simpleServiceMethod("start_service", "Starting service '%s'", nil),
		simpleServiceMethod("stop_service", "Stopping service '%s'", nil),
		{
			name: "exec", kind: "exec",
			sig: newSignature("exec",
				param{name: "service_name", required: true, conv: cNonEmptyString},
				param{name: "recipe", required: true, conv: cType("ExecRecipe")},
				param{name: "acceptable_codes", conv: cIntList, def: defaultCodes(0)},
				param{name: "skip_code_check", conv: cBool, def: starlark.False},
			),
			run: func(c *pcall) (*OMap, string, starlark.Value, error) {
				m, err := recipeCallArgs(c)
				if err != nil {
					return nil, "", nil, err
				}
				return m, fmt.Sprintf("Executing command on service '%s'", c.str("service_name")), resultDict(c, recipeFields(c.get("recipe"))), nil
			},
		},
		{
			name: "request", kind: "request",
			sig: newSignature("request",
				param{name: "service_name", required: true, conv: cNonEmptyString},
				param{name: "recipe", required: true, conv: cHTTPRecipe},
				param{name: "acceptable_codes", conv: cIntList, def: http2xx},
				param{name: "skip_code_check", conv: cBool, def: starlark.False},
			),
			run: func(c *pcall) (*OMap, string, starlark.Value, error) {
				m, err := recipeCallArgs(c)
				if err != nil {
					return nil, "", nil, err
				}
				verb := "GET"
				if c.get("recipe").(*kobj).t == postRecipeType {
					verb = "POST"
				}
				return m, fmt.Sprintf("Running '%s' request on service '%s'", verb, c.str("service_name")), resultDict(c, recipeFields(c.get("recipe"))), nil
			},
		},
		{
			name: "wait", kind: "wait",
			sig: newSignature("wait",
				param{name: "service_name", required: true, conv: cNonEmptyString},
				param{name: "recipe", required: true, conv: cAnyRecipe},
				param{name: "field", required: true, conv: cString},
				param{name: "assertion", required: true, conv: cAssertion},
				param{name: "target_value", required: true, conv: cJSONable},
				param{name: "interval", conv: cDuration, def: str("1s"), keepNone: true},
				param{name: "timeout", conv: cDuration, def: str("10s"), keepNone: true},
			),
			run: func(c *pcall) (*OMap, string, starlark.Value, error) {
				if err := checkField(c.get("recipe"), c.str("field")); err != nil {
					return nil, "", nil, c.errorf("%v", err)
				}
				if err := checkTarget(c.name, c.str("assertion"), c.get("target_value")); err != nil {
					return nil, "", nil, err
				}
				r, err := toJSON(c.get("recipe"))
				if err != nil {
					return nil, "", nil, c.errorf("%v", err)
				}
				t, _ := toJSON(c.get("target_value"))
				m := &OMap{}
				m.Set("service_name", c.str("service_name"))
				m.Set("recipe", r)
				m.Set("field", c.str("field"))
				m.Set("assertion", c.str("assertion"))
				m.Set("target_value", t)
				m.Set("interval", jsonDuration(c.get("interval")))
				m.Set("timeout", jsonDuration(c.get("timeout")))
				desc := fmt.Sprintf("Waiting for service '%s' to reach a certain state", c.str("service_name"))
				if to, ok := c.get("timeout").(starlark.String); ok {
					desc = fmt.Sprintf("Waiting for at most '%s' for service '%s' to reach a certain state", string(to), c.str("service_name"))
				}
				return m, desc, resultDict(c, recipeFields(c.get("recipe"))), nil
			},
		},
		verify,
		&assert,
		{
			name: "print", kind: "print",
			sig: newSignature("print", param{name: "msg", required: true, conv: cAny}),
			run: func(c *pcall) (*OMap, string, starlark.Value, error) {
				m := &OMap{}
				m.Set("msg", plainText(c.get("msg")))
				return m, "Printing a message", starlark.None, nil
			},
		},
		{
			name: "upload_files", kind: "upload_files",
			sig: newSignature("upload_files",
				param{name: "src", required: true, conv: cNonEmptyString},
				param{name: "name", conv: cNonEmptyString},
			),
			run: runUploadFiles,
		},
		{
			name: "render_templates", kind: "render_templates",
			sig: newSignature("render_templates",
				param{name: "config", required: true, conv: cDict},
				param{name: "name", conv: cNonEmptyString},
			),
			run: runRenderTemplates,
		},
		{
			name: "store_service_files", kind: "store_service_files",
			sig: newSignature("store_service_files",
				param{name: "service_name", required: true, conv: cNonEmptyString},
				param{name: "src", required: true, conv: cNonEmptyString},
				param{name: "name", conv: cNonEmptyString},
			),
			run: func(c *pcall) (*OMap, string, starlark.Value, error) {
				svc, src := c.str("service_name"), c.str("src")
				name := c.str("name")
				if !c.isSet("name") {
					name = c.defaultName("files", svc, src)
				}
				m := &OMap{}
				m.Set("service_name", svc)
				m.Set("src", src)
				m.Set("name", name)
				return m, fmt.Sprintf("Storing files from service '%s' at path '%s' to files artifact with name '%s'", svc, src, name), str(name), nil
			},
		},
		{
			// run_sh: the first positional argument is `run` (the older
			// Kurtosis order run, image, files, store, env_vars, wait), and
			// the arguments added later (name, acceptable_codes,
			// skip_code_check) follow. Current Kurtosis puts an optional
			// `name` first, so plan.run_sh("echo hi") would bind the script
			// to `name` there; packages pass run= by keyword either way.
			name: "run_sh", kind: "run_sh",
			sig: newSignature("run_sh",
				param{name: "run", required: true, conv: cNonEmptyString},
				param{name: "image", conv: cNonEmptyString, def: str("badouralix/curl-jq")},
				param{name: "files", conv: cStringDict, def: frozenDict()},
				param{name: "store", conv: cStoreList, def: frozenList()},
				param{name: "env_vars", conv: cStringDict, def: frozenDict()},
				param{name: "wait", conv: cDuration, def: str("180s"), keepNone: true},
				param{name: "name", conv: cServiceName},
				param{name: "acceptable_codes", conv: cIntList, def: defaultCodes(0)},
				param{name: "skip_code_check", conv: cBool, def: starlark.False},
			),
			run: runRunSh,
		},
		{
			// set_connection(subnetworks?, config): a single positional
			// ConnectionConfig is the config (the default connection).
			name: "set_connection", kind: "set_connection",
			sig: newSignature("set_connection",
				param{name: "subnetworks", conv: cPair},
				param{name: "config", required: true, conv: cType("ConnectionConfig")},
			),
			pre: func(args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Tuple, []starlark.Tuple) {
				if len(args) == 1 {
					if o, ok := args[0].(*kobj); ok && o.t == connectionConfigType {
						return nil, append([]starlark.Tuple{kw("config", o)}, kwargs...)
					}
				}
				return args, kwargs
			},
			run: func(c *pcall) (*OMap, string, starlark.Value, error) {
				m := &OMap{}
				desc := "Setting the default connection between subnetworks"
				if c.isSet("subnetworks") {
					pair := jsonStrings(c.get("subnetworks"))
					m.Set("subnetworks", pair)
					desc = fmt.Sprintf("Setting connection between subnetworks '%s' and '%s'", pair[0], pair[1])
				} else {
					m.Set("subnetworks", nil)
				}
				j, err := toJSON(c.get("config"))
				if err != nil {
					return nil, "", nil, c.errorf("%v", err)
				}
				m.Set("config", j)
				return m, desc, starlark.None, nil
			},
		},
		{
			name: "remove_connection", kind: "remove_connection",
			sig: newSignature("remove_connection", param{name: "subnetworks", required: true, conv: cPair}),
			run: func(c *pcall) (*OMap, string, starlark.Value, error) {
				pair := jsonStrings(c.get("subnetworks"))
				m := &OMap{}
				m.Set("subnetworks", pair)
				return m, fmt.Sprintf("Removing connection between subnetworks '%s' and '%s'", pair[0], pair[1]), starlark.None, nil
			},
		},
		{
			name: "exec_module", kind: "exec_module",
			sig: newSignature("exec_module",
				param{name: "module", required: true, conv: cNonEmptyString},
				param{name: "params", conv: cJSONText, def: str("{}")},
				param{name: "load_params", conv: cJSONText, def: str("{}")},
				param{name: "timeout", conv: cDuration, keepNone: true},
			),
			run: func(c *pcall) (*OMap, string, starlark.Value, error) {
				m := &OMap{}
				m.Set("module", c.str("module"))
				for _, n := range []string{"params", "load_params"} {
					v := c.get(n)
					if s, ok := v.(starlark.String); ok {
						m.Set(n, string(s))
						continue
					}
					t, err := jsonText(v)
					if err != nil {
						return nil, "", nil, c.errorf("for parameter %s: %v", n, err)
					}
					m.Set(n, t)
				}
				m.Set("timeout", jsonDuration(c.get("timeout")))
				return m, fmt.Sprintf("Executing module '%s'", c.str("module")), resultDict(c, []string{"result"}), nil
			},
		},
	}
}

func recipeCallArgs(c *pcall) (*OMap, error) {
	r, err := toJSON(c.get("recipe"))
	if err != nil {
		return nil, c.errorf("%v", err)
	}
	m := &OMap{}
	m.Set("service_name", c.str("service_name"))
	m.Set("recipe", r)
	m.Set("acceptable_codes", jsonInts(c.get("acceptable_codes")))
	m.Set("skip_code_check", c.bool("skip_code_check"))
	return m, nil
}

func runUploadFiles(c *pcall) (*OMap, string, starlark.Value, error) {
	ip := c.ip
	src := c.str("src")
	ref, err := ip.res.resolve(ip.callerFile(c.thread), src)
	if err != nil {
		return nil, "", nil, err
	}
	real, err := ip.res.secure(ref, "upload_files")
	if err != nil {
		return nil, "", nil, err
	}
	files, total, err := collectFiles(real, ref.display(), ref.pkg.root, ip.req.MaxFileBytes-ip.uploaded)
	if err != nil {
		return nil, "", nil, err
	}
	ip.uploaded += total
	name := c.str("name")
	if !c.isSet("name") {
		name = c.defaultName("upload", src)
	}
	list := make([]interface{}, 0, len(files))
	for _, f := range files {
		fm := &OMap{}
		fm.Set("path", f.path)
		fm.Set("mode", f.mode)
		fm.Set("content_base64", base64.StdEncoding.EncodeToString(f.data))
		list = append(list, fm)
	}
	m := &OMap{}
	m.Set("src", src)
	m.Set("name", name)
	m.Set("files", list)
	return m, fmt.Sprintf("Uploading file '%s' to files artifact '%s'", src, name), str(name), nil
}

func runRenderTemplates(c *pcall) (*OMap, string, starlark.Value, error) {
	ip := c.ip
	config := c.get("config").(*starlark.Dict)
	var paths []string
	list := make([]interface{}, 0, config.Len())
	for _, kv := range config.Items() {
		p, ok := kv[0].(starlark.String)
		if !ok || p == "" {
			return nil, "", nil, c.errorf("for parameter config: key %s: want a non-empty file path string", kv[0])
		}
		ha, ok := kv[1].(*starlarkstruct.Struct)
		if !ok {
			return nil, "", nil, c.errorf("for parameter config: value of key %q: got %s, want struct(template=..., data=...)", string(p), typeName(kv[1]))
		}
		tv, _ := ha.Attr("template")
		tmpl, ok := tv.(starlark.String)
		if !ok {
			return nil, "", nil, c.errorf("for parameter config: value of key %q: template: want a string", string(p))
		}
		var data interface{}
		if dv, _ := ha.Attr("data"); dv != nil {
			d, err := toGo(dv)
			if err != nil {
				return nil, "", nil, c.errorf("data of %q: %v", string(p), err)
			}
			data = d
		}
		out, err := renderTemplate(string(p), string(tmpl), data, ip.req.MaxFileBytes-ip.uploaded)
		if err != nil {
			return nil, "", nil, c.errorf("%v", err)
		}
		ip.uploaded += int64(len(out))
		fm := &OMap{}
		fm.Set("path", string(p))
		fm.Set("mode", 420)
		fm.Set("content", out)
		list = append(list, fm)
		paths = append(paths, string(p))
	}
	name := c.str("name")
	if !c.isSet("name") {
		name = c.defaultName("templates", paths...)
	}
	m := &OMap{}
	m.Set("name", name)
	m.Set("files", list)
	return m, fmt.Sprintf("Rendering a template to a files artifact with name '%s'", name), str(name), nil
}

func runRunSh(c *pcall) (*OMap, string, starlark.Value, error) {
	run := c.str("run")
	name := c.str("name")
	if !c.isSet("name") {
		name = c.defaultName("task", run)
	}
	var store []interface{}
	var artifacts []starlark.Value
	seq, _ := sequence(c.get("store"))
	for i := 0; i < seq.Len(); i++ {
		var src, sname string
		switch x := seq.Index(i).(type) {
		case starlark.String:
			src = string(x)
		case *kobj:
			src, sname = x.str("src"), x.str("name")
		}
		if sname == "" {
			sname = c.defaultName("store", run, src)
		}
		sm := &OMap{}
		sm.Set("src", src)
		sm.Set("name", sname)
		store = append(store, sm)
		artifacts = append(artifacts, str(sname))
	}
	if store == nil {
		store = []interface{}{}
	}
	m := &OMap{}
	m.Set("name", name)
	m.Set("run", run)
	m.Set("image", c.str("image"))
	m.Set("files", jsonStringDict(c.get("files")))
	m.Set("store", store)
	m.Set("env_vars", jsonStringDict(c.get("env_vars")))
	m.Set("wait", jsonDuration(c.get("wait")))
	m.Set("acceptable_codes", jsonInts(c.get("acceptable_codes")))
	m.Set("skip_code_check", c.bool("skip_code_check"))
	desc := "Running sh script"
	if len(run) < 80 {
		desc = fmt.Sprintf("Running sh script: `%s`", run)
	}
	ret := starlarkstruct.FromStringDict(starlarkstruct.Default, starlark.StringDict{
		"code":            str(c.future("code")),
		"output":          str(c.future("output")),
		"files_artifacts": frozenList(artifacts...),
	})
	return m, desc, ret, nil
}
