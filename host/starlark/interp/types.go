package main

// The Kurtosis value types (ServiceConfig, PortSpec, ReadyCondition, the
// recipes, Directory, User, StoreSpec, ConnectionConfig, the delay
// distributions), the Service returned by add_service, and the `kurtosis`
// module. Each type is a Starlark value whose attributes read its arguments
// and whose String() is Kurtosis' canonical call form, showing only the
// arguments that differ from their defaults.

import (
	"fmt"
	"regexp"
	"sort"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
	"go.starlark.net/syntax"
)

type ktype struct {
	name  string
	sig   *signature
	check func(o *kobj) error                // cross-argument checks
	json  func(o *kobj) (interface{}, error) // the plan's JSON form
}

// kobj is a value of a Kurtosis type.
type kobj struct {
	t *ktype
	*bound
}

var (
	_ starlark.HasAttrs   = (*kobj)(nil)
	_ starlark.Comparable = (*kobj)(nil)
)

func (o *kobj) String() string       { return o.call(o.t.name, true) }
func (o *kobj) Type() string         { return o.t.name }
func (o *kobj) Truth() starlark.Bool { return true }
func (o *kobj) Hash() (uint32, error) {
	return 0, fmt.Errorf("unhashable type: %s", o.t.name)
}
func (o *kobj) Freeze() {
	for _, v := range o.vals {
		v.Freeze()
	}
}

func (o *kobj) Attr(name string) (starlark.Value, error) {
	if i, ok := o.sig.index[name]; ok {
		return o.vals[i], nil
	}
	return nil, nil
}

func (o *kobj) AttrNames() []string {
	names := make([]string, 0, len(o.sig.params))
	for _, p := range o.sig.params {
		names = append(names, p.name)
	}
	sort.Strings(names)
	return names
}

func (o *kobj) CompareSameType(op syntax.Token, y starlark.Value, depth int) (bool, error) {
	other := y.(*kobj)
	eq := o.t == other.t && o.String() == other.String()
	switch op {
	case syntax.EQL:
		return eq, nil
	case syntax.NEQ:
		return !eq, nil
	}
	return false, fmt.Errorf("%s %s %s not implemented", o.t.name, op, other.t.name)
}

func (o *kobj) toJSON() (interface{}, error) { return o.t.json(o) }

// builtin is the constructor.
func (t *ktype) builtin() *starlark.Builtin {
	return starlark.NewBuiltin(t.name, func(_ *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		return t.make(args, kwargs)
	})
}

func (t *ktype) make(args starlark.Tuple, kwargs []starlark.Tuple) (*kobj, error) {
	b, err := t.sig.bind(args, kwargs)
	if err != nil {
		return nil, err
	}
	o := &kobj{t: t, bound: b}
	if t.check != nil {
		if err := t.check(o); err != nil {
			return nil, fmt.Errorf("%s: %v", t.name, err)
		}
	}
	return o, nil
}

func mustMake(t *ktype, kwargs ...starlark.Tuple) *kobj {
	o, err := t.make(nil, kwargs)
	if err != nil {
		panic(err)
	}
	return o
}

func kw(name string, v starlark.Value) starlark.Tuple {
	return starlark.Tuple{starlark.String(name), v}
}

func frozenDict() *starlark.Dict {
	d := starlark.NewDict(0)
	d.Freeze()
	return d
}

func frozenList(vs ...starlark.Value) *starlark.List {
	l := starlark.NewList(vs)
	l.Freeze()
	return l
}

func str(s string) starlark.Value { return starlark.String(s) }

// ---- JSON helpers for argument values (already checked by their conv) ----

func jsonStrings(v starlark.Value) []interface{} {
	out := []interface{}{}
	if seq, ok := sequence(v); ok {
		for i := 0; i < seq.Len(); i++ {
			s, _ := starlark.AsString(seq.Index(i))
			out = append(out, s)
		}
	}
	return out
}

func jsonInts(v starlark.Value) []interface{} {
	out := []interface{}{}
	if seq, ok := sequence(v); ok {
		for i := 0; i < seq.Len(); i++ {
			n, _ := seq.Index(i).(starlark.Int).Int64()
			out = append(out, n)
		}
	}
	return out
}

func jsonStringDict(v starlark.Value) *OMap {
	m := &OMap{}
	if d, ok := v.(*starlark.Dict); ok {
		for _, kv := range d.Items() {
			k, _ := starlark.AsString(kv[0])
			s, _ := starlark.AsString(kv[1])
			m.Set(k, s)
		}
	}
	return m
}

// jsonObjDict converts a dict of Kurtosis values.
func jsonObjDict(v starlark.Value) (*OMap, error) {
	m := &OMap{}
	if d, ok := v.(*starlark.Dict); ok {
		for _, kv := range d.Items() {
			k, _ := starlark.AsString(kv[0])
			j, err := toJSON(kv[1])
			if err != nil {
				return nil, err
			}
			m.Set(k, j)
		}
	}
	return m, nil
}

func jsonDuration(v starlark.Value) interface{} {
	if s, ok := v.(starlark.String); ok {
		return string(s)
	}
	return nil
}

func jsonOptional(v starlark.Value) (interface{}, error) {
	if v == starlark.None {
		return nil, nil
	}
	return toJSON(v)
}

// ---- PortSpec ----

var appProtocolRE = regexp.MustCompile(`^[a-zA-Z0-9+.-]*$`)

func cTransport(v starlark.Value) (starlark.Value, error) {
	s, ok := v.(starlark.String)
	if !ok {
		return nil, errWant(v, "string")
	}
	switch up := toUpper(string(s)); up {
	case "":
		return str("TCP"), nil
	case "TCP", "UDP", "SCTP":
		return str(up), nil
	}
	return nil, fmt.Errorf("%q is not a transport protocol: want \"TCP\", \"UDP\" or \"SCTP\"", string(s))
}

func toUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

func cAppProtocol(v starlark.Value) (starlark.Value, error) {
	s, ok := v.(starlark.String)
	if !ok {
		return nil, errWant(v, "string")
	}
	if !appProtocolRE.MatchString(string(s)) {
		return nil, fmt.Errorf("%q is not an application protocol: letters, digits, '+', '.' and '-' only", string(s))
	}
	return v, nil
}

var portSpecType = &ktype{
	name: "PortSpec",
	sig: newSignature("PortSpec",
		param{name: "number", required: true, conv: cIntRange(1, 65535)},
		param{name: "transport_protocol", conv: cTransport, def: str("TCP")},
		param{name: "application_protocol", conv: cAppProtocol, def: str("")},
		param{name: "wait", conv: cDuration, def: str("15s"), keepNone: true},
	),
	json: func(o *kobj) (interface{}, error) {
		m := &OMap{}
		m.Set("number", o.int("number"))
		m.Set("transport_protocol", o.str("transport_protocol"))
		m.Set("application_protocol", o.str("application_protocol"))
		m.Set("wait", jsonDuration(o.get("wait")))
		return m, nil
	},
}

// ---- recipes ----

var execRecipeType = &ktype{
	name: "ExecRecipe",
	sig: newSignature("ExecRecipe",
		param{name: "command", required: true, conv: cStringList},
		param{name: "extract", conv: cStringDict, def: frozenDict()},
	),
	check: func(o *kobj) error {
		if seq, _ := sequence(o.get("command")); seq.Len() == 0 {
			return fmt.Errorf("command must not be empty")
		}
		return nil
	},
	json: func(o *kobj) (interface{}, error) {
		m := &OMap{}
		m.Set("type", "exec")
		m.Set("command", jsonStrings(o.get("command")))
		m.Set("extract", jsonStringDict(o.get("extract")))
		return m, nil
	},
}

var getRecipeType = &ktype{
	name: "GetHttpRequestRecipe",
	sig: newSignature("GetHttpRequestRecipe",
		param{name: "port_id", required: true, conv: cString},
		param{name: "endpoint", required: true, conv: cString},
		param{name: "extract", conv: cStringDict, def: frozenDict()},
		param{name: "headers", conv: cStringDict, def: frozenDict()},
	),
	json: func(o *kobj) (interface{}, error) {
		m := &OMap{}
		m.Set("type", "get")
		m.Set("port_id", o.str("port_id"))
		m.Set("endpoint", o.str("endpoint"))
		m.Set("extract", jsonStringDict(o.get("extract")))
		m.Set("headers", jsonStringDict(o.get("headers")))
		return m, nil
	},
}

// PostHttpRequestRecipe: the source's positional order is body, then
// content_type (the docs list them the other way round).
var postRecipeType = &ktype{
	name: "PostHttpRequestRecipe",
	sig: newSignature("PostHttpRequestRecipe",
		param{name: "port_id", required: true, conv: cString},
		param{name: "endpoint", required: true, conv: cString},
		param{name: "body", conv: cString, def: str("")},
		param{name: "content_type", conv: cString, def: str("application/json")},
		param{name: "extract", conv: cStringDict, def: frozenDict()},
		param{name: "headers", conv: cStringDict, def: frozenDict()},
	),
	json: func(o *kobj) (interface{}, error) {
		m := &OMap{}
		m.Set("type", "post")
		m.Set("port_id", o.str("port_id"))
		m.Set("endpoint", o.str("endpoint"))
		m.Set("body", o.str("body"))
		m.Set("content_type", o.str("content_type"))
		m.Set("extract", jsonStringDict(o.get("extract")))
		m.Set("headers", jsonStringDict(o.get("headers")))
		return m, nil
	},
}

var cAnyRecipe = cType("ExecRecipe", "GetHttpRequestRecipe", "PostHttpRequestRecipe")
var cHTTPRecipe = cType("GetHttpRequestRecipe", "PostHttpRequestRecipe")

// recipeFields lists the result keys of a recipe: code and output (exec)
// or body (HTTP), then extract.KEY for each extractor.
func recipeFields(recipe starlark.Value) []string {
	o := recipe.(*kobj)
	fields := []string{"code"}
	if o.t == execRecipeType {
		fields = append(fields, "output")
	} else {
		fields = append(fields, "body")
	}
	if d, ok := o.get("extract").(*starlark.Dict); ok {
		for _, kv := range d.Items() {
			k, _ := starlark.AsString(kv[0])
			fields = append(fields, "extract."+k)
		}
	}
	return fields
}

func checkField(recipe starlark.Value, field string) error {
	fields := recipeFields(recipe)
	for _, f := range fields {
		if f == field {
			return nil
		}
	}
	return fmt.Errorf("field %q is not a result of %s: want one of %v", field, recipe.Type(), fields)
}

// ---- ReadyCondition ----

var readyConditionType = &ktype{
	name: "ReadyCondition",
	sig: newSignature("ReadyCondition",
		param{name: "recipe", required: true, conv: cAnyRecipe},
		param{name: "field", required: true, conv: cString},
		param{name: "assertion", required: true, conv: cAssertion},
		param{name: "target_value", required: true, conv: cJSONable},
		param{name: "interval", conv: cDuration, def: str("1s"), keepNone: true},
		param{name: "timeout", conv: cDuration, def: str("15m"), keepNone: true},
	),
	check: func(o *kobj) error {
		if err := checkField(o.get("recipe"), o.str("field")); err != nil {
			return err
		}
		return checkTarget("ReadyCondition", o.str("assertion"), o.get("target_value"))
	},
	json: func(o *kobj) (interface{}, error) {
		m := &OMap{}
		r, err := toJSON(o.get("recipe"))
		if err != nil {
			return nil, err
		}
		t, err := toJSON(o.get("target_value"))
		if err != nil {
			return nil, err
		}
		m.Set("recipe", r)
		m.Set("field", o.str("field"))
		m.Set("assertion", o.str("assertion"))
		m.Set("target_value", t)
		m.Set("interval", jsonDuration(o.get("interval")))
		m.Set("timeout", jsonDuration(o.get("timeout")))
		return m, nil
	},
}

func cJSONable(v starlark.Value) (starlark.Value, error) {
	if _, err := toJSON(v); err != nil {
		return nil, err
	}
	return v, nil
}

// ---- Directory, User, StoreSpec ----

// Directory: artifact_names (current) or persistent_key; `artifact_name`
// (a single name, older releases) is accepted as the last argument.
var directoryType = &ktype{
	name: "Directory",
	sig: newSignature("Directory",
		param{name: "artifact_names", conv: cStringList, def: frozenList()},
		param{name: "persistent_key", conv: cString, def: str("")},
		param{name: "size", conv: cNonNegInt, def: starlark.MakeInt(0)},
		param{name: "artifact_name", conv: cNonEmptyString, def: str("")},
	),
	check: func(o *kobj) error {
		names := len(jsonStrings(o.get("artifact_names")))
		if o.str("artifact_name") != "" {
			if names > 0 {
				return fmt.Errorf("give artifact_names or artifact_name, not both")
			}
			names = 1
		}
		hasKey := o.str("persistent_key") != ""
		if names > 0 && hasKey {
			return fmt.Errorf("give artifact_names or persistent_key, not both")
		}
		if names == 0 && !hasKey {
			return fmt.Errorf("give artifact_names or persistent_key")
		}
		return nil
	},
	json: func(o *kobj) (interface{}, error) {
		m := &OMap{}
		names := jsonStrings(o.get("artifact_names"))
		if n := o.str("artifact_name"); n != "" {
			names = []interface{}{n}
		}
		m.Set("artifact_names", names)
		m.Set("persistent_key", o.str("persistent_key"))
		return m, nil
	},
}

var userType = &ktype{
	name: "User",
	sig: newSignature("User",
		param{name: "uid", required: true, conv: cNonNegInt},
		param{name: "gid", conv: cNonNegInt},
	),
	json: func(o *kobj) (interface{}, error) {
		m := &OMap{}
		m.Set("uid", o.int("uid"))
		if o.isSet("gid") {
			m.Set("gid", o.int("gid"))
		} else {
			m.Set("gid", nil)
		}
		return m, nil
	},
}

var storeSpecType = &ktype{
	name: "StoreSpec",
	sig: newSignature("StoreSpec",
		param{name: "src", required: true, conv: cNonEmptyString},
		param{name: "name", conv: cString, def: str("")},
	),
	json: func(o *kobj) (interface{}, error) {
		m := &OMap{}
		m.Set("src", o.str("src"))
		m.Set("name", o.str("name"))
		return m, nil
	},
}

// ---- ServiceConfig ----

var cPortDict = cDictOf("string to PortSpec", nil, cType("PortSpec"))
var cFilesDict = cDictOf("string to string or Directory", nil, cOr("string or Directory", cString, cType("Directory")))

// ServiceConfig arguments in Kurtosis' positional order. cpu_allocation and
// memory_allocation are the deprecated names of max_cpu and max_memory;
// tolerations and node_selectors (Kubernetes only) are accepted and not
// used; subnetwork is the pre-0.81 networking field.
var serviceConfigType = &ktype{
	name: "ServiceConfig",
	sig: newSignature("ServiceConfig",
		param{name: "image", required: true, conv: cNonEmptyString},
		param{name: "ports", conv: cPortDict, def: frozenDict()},
		param{name: "public_ports", conv: cPortDict, def: frozenDict()},
		param{name: "files", conv: cFilesDict, def: frozenDict()},
		param{name: "entrypoint", conv: cStringList, def: frozenList()},
		param{name: "cmd", conv: cStringList, def: frozenList()},
		param{name: "env_vars", conv: cStringDict, def: frozenDict()},
		param{name: "private_ip_address_placeholder", conv: cNonEmptyString, def: str("KURTOSIS_IP_ADDR_PLACEHOLDER")},
		param{name: "cpu_allocation", conv: cNonNegInt, def: starlark.MakeInt(0)},
		param{name: "memory_allocation", conv: cNonNegInt, def: starlark.MakeInt(0)},
		param{name: "max_cpu", conv: cNonNegInt, def: starlark.MakeInt(0)},
		param{name: "min_cpu", conv: cNonNegInt, def: starlark.MakeInt(0)},
		param{name: "max_memory", conv: cNonNegInt, def: starlark.MakeInt(0)},
		param{name: "min_memory", conv: cNonNegInt, def: starlark.MakeInt(0)},
		param{name: "ready_conditions", conv: cType("ReadyCondition")},
		param{name: "labels", conv: cDictOf("string to string", checkLabel, cString), def: frozenDict()},
		param{name: "user", conv: cType("User")},
		param{name: "tolerations", conv: cListOf("Toleration", cAny), def: frozenList()},
		param{name: "node_selectors", conv: cStringDict, def: frozenDict()},
		param{name: "subnetwork", conv: cNonEmptyString, def: str("default")},
	),
	check: func(o *kobj) error {
		for _, n := range []string{"max_memory", "memory_allocation"} {
			if v := o.int(n); v != 0 && v < 6 {
				return fmt.Errorf("%s is %d MB: must be at least 6", n, v)
			}
		}
		return nil
	},
	json: serviceConfigJSON,
}

var labelRE = regexp.MustCompile(`^[a-zA-Z0-9]([-_.a-zA-Z0-9]{0,61}[a-zA-Z0-9])?$`)

func checkLabel(k string) error {
	if !labelRE.MatchString(k) {
		return fmt.Errorf("not a valid label key: letters, digits, '-', '_' and '.', at most 63 characters")
	}
	return nil
}

func serviceConfigJSON(o *kobj) (interface{}, error) {
	m := &OMap{}
	m.Set("image", o.str("image"))
	for _, n := range []string{"ports", "public_ports"} {
		p, err := jsonObjDict(o.get(n))
		if err != nil {
			return nil, err
		}
		m.Set(n, p)
	}
	files := &OMap{}
	for _, kv := range o.get("files").(*starlark.Dict).Items() {
		k, _ := starlark.AsString(kv[0])
		if s, ok := kv[1].(starlark.String); ok {
			d := &OMap{}
			d.Set("artifact_names", []interface{}{string(s)})
			d.Set("persistent_key", "")
			files.Set(k, d)
		} else {
			j, err := toJSON(kv[1])
			if err != nil {
				return nil, err
			}
			files.Set(k, j)
		}
	}
	m.Set("files", files)
	m.Set("entrypoint", jsonStrings(o.get("entrypoint")))
	m.Set("cmd", jsonStrings(o.get("cmd")))
	m.Set("env_vars", jsonStringDict(o.get("env_vars")))
	m.Set("private_ip_address_placeholder", o.str("private_ip_address_placeholder"))
	maxCPU, maxMem := o.int("max_cpu"), o.int("max_memory")
	if maxCPU == 0 {
		maxCPU = o.int("cpu_allocation")
	}
	if maxMem == 0 {
		maxMem = o.int("memory_allocation")
	}
	m.Set("max_cpu", maxCPU)
	m.Set("min_cpu", o.int("min_cpu"))
	m.Set("max_memory", maxMem)
	m.Set("min_memory", o.int("min_memory"))
	rc, err := jsonOptional(o.get("ready_conditions"))
	if err != nil {
		return nil, err
	}
	m.Set("ready_conditions", rc)
	m.Set("labels", jsonStringDict(o.get("labels")))
	u, err := jsonOptional(o.get("user"))
	if err != nil {
		return nil, err
	}
	m.Set("user", u)
	m.Set("subnetwork", o.str("subnetwork"))
	return m, nil
}

// ---- networking (pre-0.81) ----

var uniformDelayType = &ktype{
	name: "UniformPacketDelayDistribution",
	sig: newSignature("UniformPacketDelayDistribution",
		param{name: "ms", required: true, conv: cNonNegInt},
		param{name: "jitter_ms", conv: cNonNegInt, def: starlark.MakeInt(0)},
	),
	json: func(o *kobj) (interface{}, error) {
		m := &OMap{}
		m.Set("distribution", "uniform")
		m.Set("ms", o.int("ms"))
		m.Set("jitter_ms", o.int("jitter_ms"))
		return m, nil
	},
}

var normalDelayType = &ktype{
	name: "NormalPacketDelayDistribution",
	sig: newSignature("NormalPacketDelayDistribution",
		param{name: "mean_ms", required: true, conv: cNonNegInt},
		param{name: "std_dev_ms", required: true, conv: cNonNegInt},
		param{name: "correlation", conv: cPercentage, def: starlark.Float(0)},
	),
	json: func(o *kobj) (interface{}, error) {
		m := &OMap{}
		m.Set("distribution", "normal")
		m.Set("mean_ms", o.int("mean_ms"))
		m.Set("std_dev_ms", o.int("std_dev_ms"))
		m.Set("correlation", o.float("correlation"))
		return m, nil
	},
}

var connectionConfigType = &ktype{
	name: "ConnectionConfig",
	sig: newSignature("ConnectionConfig",
		param{name: "packet_loss_percentage", conv: cPercentage, def: starlark.Float(0)},
		param{name: "packet_delay_distribution", conv: cType("UniformPacketDelayDistribution", "NormalPacketDelayDistribution")},
	),
	json: func(o *kobj) (interface{}, error) {
		m := &OMap{}
		m.Set("packet_loss_percentage", o.float("packet_loss_percentage"))
		d, err := jsonOptional(o.get("packet_delay_distribution"))
		if err != nil {
			return nil, err
		}
		m.Set("delay", d)
		return m, nil
	},
}

var allTypes = []*ktype{
	serviceConfigType, portSpecType, readyConditionType, execRecipeType,
	getRecipeType, postRecipeType, directoryType, userType, storeSpecType,
	connectionConfigType, uniformDelayType, normalDelayType,
}

// kurtosisModule: kurtosis.connection.ALLOWED / BLOCKED (pre-0.81). The
// current module holds enclave variables, empty locally.
func kurtosisModule() *starlarkstruct.Module {
	allowed := mustMake(connectionConfigType, kw("packet_loss_percentage", starlark.MakeInt(0)))
	blocked := mustMake(connectionConfigType, kw("packet_loss_percentage", starlark.MakeInt(100)))
	conn := &starlarkstruct.Module{Name: "connection", Members: starlark.StringDict{"ALLOWED": allowed, "BLOCKED": blocked}}
	m := &starlarkstruct.Module{Name: "kurtosis", Members: starlark.StringDict{"connection": conn}}
	m.Freeze()
	return m
}

// ---- Service (returned by add_service, add_services, get_service) ----

type serviceValue struct {
	name      string
	ipAddress string
	ports     *starlark.Dict
}

var _ starlark.HasAttrs = (*serviceValue)(nil)

func (s *serviceValue) String() string {
	return fmt.Sprintf("Service(name=%s, hostname=%s, ip_address=%s, ports=%s)",
		str(s.name), str(s.name), str(s.ipAddress), s.ports)
}
func (s *serviceValue) Type() string          { return "Service" }
func (s *serviceValue) Truth() starlark.Bool  { return true }
func (s *serviceValue) Hash() (uint32, error) { return 0, fmt.Errorf("unhashable type: Service") }
func (s *serviceValue) Freeze()               { s.ports.Freeze() }
func (s *serviceValue) AttrNames() []string {
	return []string{"hostname", "ip_address", "name", "ports"}
}

func (s *serviceValue) Attr(name string) (starlark.Value, error) {
	switch name {
	case "name", "hostname":
		return str(s.name), nil
	case "ip_address":
		return str(s.ipAddress), nil
	case "ports":
		return s.ports, nil
	}
	return nil, nil
}

func (s *serviceValue) toJSON() (interface{}, error) {
	m := &OMap{}
	m.Set("name", s.name)
	m.Set("hostname", s.name)
	m.Set("ip_address", s.ipAddress)
	p, err := jsonObjDict(s.ports)
	if err != nil {
		return nil, err
	}
	m.Set("ports", p)
	return m, nil
}
