// Command modhost-starlark interprets a Kurtosis Starlark package into a
// plan: plain JSON, the instructions in order (docs/starlark-plan.md).
//
//	modhost-starlark interpret < request.json > reply.json
//	modhost-starlark render    < render.json  > reply.json
//
// It never talks to a backend: it only reads the package's files.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"go.starlark.net/resolve"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkjson"
	"go.starlark.net/starlarkstruct"
	"go.starlark.net/syntax"
)

const usage = `usage: modhost-starlark interpret < request.json > reply.json
       modhost-starlark render    < render.json  > reply.json

interpret  runs a Kurtosis package's run(plan, args) and prints its plan.
           The request is one JSON object:
             package_dir     absolute path of the package (a folder with kurtosis.yml)
             script          absolute path of a single .star file (instead of package_dir)
             main_file       package-relative main file (default main.star)
             main_function   default run
             args            JSON object, the run's args (default {})
             package_dirs    folders where other packages are looked up
             max_steps       Starlark steps allowed (default 10000000)
             timeout_ms      wall-clock limit (default 30000)
             max_file_bytes  largest file, and total uploads (default 64 MiB)
           Reply: {"plan": ...} (exit 0) or {"errors": [...]} (exit 1).
render     renders one Go text/template: {"template": S, "data": JSON, "name": S}
           Reply: {"content": S} (exit 0) or {"errors": [...]} (exit 1).
Exit 2: a bad request (the message on stderr).
`

type request struct {
	PackageDir   string          `json:"package_dir"`
	Script       string          `json:"script"`
	MainFile     string          `json:"main_file"`
	MainFunction string          `json:"main_function"`
	Args         json.RawMessage `json:"args"`
	PackageDirs  []string        `json:"package_dirs"`
	MaxSteps     int64           `json:"max_steps"`
	TimeoutMS    int64           `json:"timeout_ms"`
	MaxFileBytes int64           `json:"max_file_bytes"`
}

func parseRequest(data []byte) (*request, error) {
	var req request
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&req); err != nil {
		return nil, fmt.Errorf("the request is not a JSON object: %v", err)
	}
	if (req.PackageDir == "") == (req.Script == "") {
		return nil, errors.New("give exactly one of package_dir and script")
	}
	for _, p := range []string{req.PackageDir, req.Script} {
		if p != "" && !filepath.IsAbs(p) {
			return nil, fmt.Errorf("%q is not an absolute path", p)
		}
	}
	if req.PackageDir != "" {
		if fi, err := os.Stat(req.PackageDir); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("package_dir %s is not a folder", req.PackageDir)
		}
	} else if fi, err := os.Stat(req.Script); err != nil || fi.IsDir() {
		return nil, fmt.Errorf("script %s is not a file", req.Script)
	}
	if req.MainFile == "" {
		req.MainFile = "main.star"
	}
	req.MainFile = filepath.ToSlash(filepath.Clean(req.MainFile))
	if filepath.IsAbs(req.MainFile) || req.MainFile == ".." || strings.HasPrefix(req.MainFile, "../") {
		return nil, fmt.Errorf("main_file %q must be a path inside the package", req.MainFile)
	}
	if req.MainFunction == "" {
		req.MainFunction = "run"
	}
	if req.MaxSteps < 0 || req.TimeoutMS < 0 || req.MaxFileBytes < 0 {
		return nil, errors.New("max_steps, timeout_ms and max_file_bytes must not be negative")
	}
	if req.MaxSteps == 0 {
		req.MaxSteps = 10000000
	}
	if req.TimeoutMS == 0 {
		req.TimeoutMS = 30000
	}
	if req.MaxFileBytes == 0 {
		req.MaxFileBytes = 64 << 20
	}
	a := bytes.TrimSpace(req.Args)
	if len(a) == 0 || string(a) == "null" {
		req.Args = json.RawMessage("{}")
	} else if a[0] != '{' {
		return nil, errors.New("args must be a JSON object")
	}
	return &req, nil
}

// hostError is an error with its kind; pos and stack are filled from the
// Starlark call stack when empty.
type hostError struct {
	kind  string
	msg   string
	pos   string
	stack []string
}

func (e *hostError) Error() string { return e.msg }

func (e *hostError) json() *OMap {
	m := &OMap{}
	m.Set("kind", e.kind)
	m.Set("message", e.msg)
	m.Set("position", e.pos)
	st := e.stack
	if st == nil {
		st = []string{}
	}
	m.Set("stack", st)
	return m
}

type moduleEntry struct {
	display string
	module  *starlarkstruct.Module
	loading bool
}

type interp struct {
	req         *request
	res         *resolver
	main        *pkg
	thread      *starlark.Thread
	predeclared starlark.StringDict
	files       map[string]fileRef      // display name -> file
	modules     map[string]*moduleEntry // real path -> module
	loading     []string                // display names being loaded
	instrs      []*instruction
	services    map[string]*starlark.Dict // ports of the services added so far
	nameUses    map[string]int
	uploaded    int64
	timedOut    int32
}

func newInterp(req *request) *interp {
	ip := &interp{
		req:      req,
		files:    map[string]fileRef{},
		modules:  map[string]*moduleEntry{},
		services: map[string]*starlark.Dict{},
		nameUses: map[string]int{},
	}
	ip.predeclared = starlark.StringDict{
		"import_module": ip.builtin("import_module", ip.importModule),
		"read_file":     ip.builtin("read_file", ip.readFile),
		"print":         ip.builtin("print", noPrint),
		"struct":        starlark.NewBuiltin("struct", starlarkstruct.Make),
		"json":          starlarkjson.Module,
		"kurtosis":      kurtosisModule(),
	}
	for _, t := range allTypes {
		t := t
		ip.predeclared[t.name] = ip.builtin(t.name, func(_ *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			return t.make(args, kwargs)
		})
	}
	return ip
}

// builtin wraps fn so that a Go panic becomes an interpretation error at
// the call.
func (ip *interp) builtin(name string, fn func(*starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error)) *starlark.Builtin {
	return starlark.NewBuiltin(name, func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (v starlark.Value, err error) {
		defer func() {
			if r := recover(); r != nil {
				v, err = nil, &hostError{kind: "interpretation", msg: fmt.Sprintf("internal error in %s: %v", name, r)}
			}
		}()
		return fn(thread, b, args, kwargs)
	})
}

func noPrint(_ *starlark.Thread, _ *starlark.Builtin, _ starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
	return nil, errors.New("print() is not available: use plan.print(msg) instead")
}

func callerPos(thread *starlark.Thread) string {
	if thread.CallStackDepth() < 2 {
		return ""
	}
	return thread.CallFrame(1).Pos.String()
}

// callerFile is the file of the Starlark code calling the current builtin.
func (ip *interp) callerFile(thread *starlark.Thread) fileRef {
	if thread.CallStackDepth() >= 2 {
		if f, ok := ip.files[thread.CallFrame(1).Pos.Filename()]; ok {
			return f
		}
	}
	return fileRef{pkg: ip.main, rel: ip.req.MainFile}
}

var readFileSig = newSignature("read_file", param{name: "src", required: true, conv: cNonEmptyString})
var importModuleSig = newSignature("import_module", param{name: "module_file", required: true, conv: cNonEmptyString})

func (ip *interp) readFile(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	b2, err := readFileSig.bind(args, kwargs)
	if err != nil {
		return nil, err
	}
	src := b2.str("src")
	ref, err := ip.res.resolve(ip.callerFile(thread), src)
	if err != nil {
		return nil, err
	}
	real, err := ip.res.secure(ref, "read_file")
	if err != nil {
		return nil, err
	}
	data, err := readFile(real, ref.display(), ip.req.MaxFileBytes)
	if err != nil {
		return nil, err
	}
	return starlark.String(data), nil
}

func (ip *interp) importModule(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	b2, err := importModuleSig.bind(args, kwargs)
	if err != nil {
		return nil, err
	}
	loc := b2.str("module_file")
	ref, err := ip.res.resolve(ip.callerFile(thread), loc)
	if err != nil {
		return nil, err
	}
	m, err := ip.loadModule(thread, ref)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// loadModule executes a file once; later imports get the same module.
func (ip *interp) loadModule(thread *starlark.Thread, ref fileRef) (*starlarkstruct.Module, error) {
	real, err := ip.res.secure(ref, "import_module")
	if err != nil {
		return nil, err
	}
	display := ref.display()
	if e, ok := ip.modules[real]; ok {
		if e.loading {
			chain := ip.loading
			for i, d := range chain {
				if d == e.display {
					chain = chain[i:]
					break
				}
			}
			return nil, &hostError{kind: "interpretation", msg: "import cycle: " + strings.Join(append(append([]string(nil), chain...), e.display), " -> ")}
		}
		return e.module, nil
	}
	data, err := readFile(real, display, ip.req.MaxFileBytes)
	if err != nil {
		return nil, err
	}
	ip.files[display] = ref
	e := &moduleEntry{display: display, loading: true}
	ip.modules[real] = e
	ip.loading = append(ip.loading, display)
	globals, err := starlark.ExecFile(thread, display, data, ip.predeclared)
	ip.loading = ip.loading[:len(ip.loading)-1]
	if err != nil {
		delete(ip.modules, real)
		return nil, err
	}
	e.loading = false
	e.module = &starlarkstruct.Module{Name: display, Members: globals}
	return e.module, nil
}

// ---- the run ----

func (ip *interp) interpret() (plan *OMap, errs []*hostError) {
	defer func() {
		if r := recover(); r != nil {
			plan, errs = nil, []*hostError{{kind: "interpretation", msg: fmt.Sprintf("internal error: %v", r)}}
		}
	}()
	req := ip.req
	var mainRef fileRef
	if req.PackageDir != "" {
		p, err := loadPackage(req.PackageDir, true)
		if err != nil {
			return nil, ip.convertError(err)
		}
		ip.main = p
		mainRef = fileRef{pkg: p, rel: req.MainFile}
	} else {
		dir := filepath.Dir(filepath.Clean(req.Script))
		root, err := filepath.EvalSymlinks(dir)
		if err != nil {
			return nil, ip.convertError(packageError("cannot open %s: %v", dir, err))
		}
		ip.main = &pkg{dir: dir, root: root, main: true}
		mainRef = fileRef{pkg: ip.main, rel: filepath.Base(req.Script)}
		req.MainFile = mainRef.rel
	}
	ip.res = newResolver(ip.main, req.PackageDirs)

	thread := &starlark.Thread{
		Name: "modhost-starlark",
		Load: func(_ *starlark.Thread, module string) (starlark.StringDict, error) {
			return nil, errors.New("load() is not available: use `m = import_module(\"path/to/file.star\")` and then m.name")
		},
		Print: func(_ *starlark.Thread, _ string) {},
	}
	thread.SetMaxExecutionSteps(uint64(req.MaxSteps))
	ip.thread = thread
	timer := time.AfterFunc(time.Duration(req.TimeoutMS)*time.Millisecond, func() {
		atomic.StoreInt32(&ip.timedOut, 1)
		thread.Cancel("timeout")
	})
	defer timer.Stop()

	if _, err := os.Stat(mainRef.abs()); err != nil {
		return nil, ip.convertError(packageError("the main file %s is missing in %s", mainRef.rel, ip.main.dir))
	}
	mod, err := ip.callBuiltin(thread, "<toplevel>", func() (starlark.Value, error) { return ip.loadModule(thread, mainRef) })
	if err != nil {
		return nil, ip.convertError(err)
	}
	fnv := mod.(*starlarkstruct.Module).Members[req.MainFunction]
	fn, ok := fnv.(*starlark.Function)
	if !ok {
		return nil, []*hostError{{kind: "interpretation", msg: fmt.Sprintf("no function %s found in %s: a package's main file needs `def %s(plan, ...)`", req.MainFunction, mainRef.display(), req.MainFunction), pos: mainRef.display()}}
	}
	callArgs, kwargs, herr := ip.mainArguments(fn)
	if herr != nil {
		return nil, []*hostError{herr}
	}
	ret, err := starlark.Call(thread, fn, callArgs, kwargs)
	if err != nil {
		errs := ip.convertError(err)
		var ee *starlark.EvalError
		bindErr := errors.As(err, &ee) && len(ee.CallStack) == 1 && strings.HasPrefix(ee.Msg, "function "+fn.Name()+" ")
		for _, e := range errs {
			if e.pos == "" || bindErr {
				// the arguments did not bind: the error is at the def
				e.pos = fn.Position().String()
				e.stack = []string{e.pos + ": in " + fn.Name()}
			}
		}
		return nil, errs
	}
	out, err := toJSON(ret)
	if err != nil {
		return nil, []*hostError{{kind: "interpretation", msg: fmt.Sprintf("the value returned by %s: %v", req.MainFunction, err), pos: fn.Position().String()}}
	}
	plan = &OMap{}
	plan.Set("version", 1)
	plan.Set("package", ip.main.name)
	plan.Set("main_file", req.MainFile)
	list := make([]interface{}, len(ip.instrs))
	for i, in := range ip.instrs {
		list[i] = in.json()
	}
	plan.Set("instructions", list)
	plan.Set("output", out)
	return plan, nil
}

// callBuiltin runs f as a builtin called from the thread, so that its
// errors carry the Starlark call stack.
func (ip *interp) callBuiltin(thread *starlark.Thread, name string, f func() (starlark.Value, error)) (starlark.Value, error) {
	b := starlark.NewBuiltin(name, func(*starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error) {
		return f()
	})
	return starlark.Call(thread, b, nil, nil)
}

// mainArguments: run(plan, args) with a second parameter named args (and
// no others) gets the whole args dict; otherwise each top-level key is a
// keyword argument.
func (ip *interp) mainArguments(fn *starlark.Function) (starlark.Tuple, []starlark.Tuple, *hostError) {
	args, err := fromJSON(ip.req.Args)
	if err != nil {
		return nil, nil, &hostError{kind: "interpretation", msg: fmt.Sprintf("args: %v", err)}
	}
	var dict *starlark.Dict
	switch a := args.(type) {
	case *starlark.Dict:
		dict = a
	case *starlarkstruct.Struct:
		dict = starlark.NewDict(0)
		for _, n := range a.AttrNames() {
			v, _ := a.Attr(n)
			_ = dict.SetKey(str(n), v)
		}
	}
	pos := fn.Position().String()
	name := fn.Name()
	n := fn.NumParams()
	var positional starlark.Tuple
	if n > 0 {
		if p, _ := fn.Param(0); p != "plan" {
			if fn.HasVarargs() && n == 1 {
				// def run(*args): no plan parameter
			} else {
				return nil, nil, &hostError{kind: "interpretation", msg: fmt.Sprintf("the first parameter of %s must be named 'plan', not '%s'", name, p), pos: pos}
			}
		} else {
			positional = starlark.Tuple{ip.newPlan()}
		}
	}
	if n == 2 && !fn.HasVarargs() && !fn.HasKwargs() && fn.NumKwonlyParams() == 0 {
		if p, _ := fn.Param(1); p == "args" {
			return append(positional, dict), nil, nil
		}
	}
	if dict.Len() == 0 {
		return positional, nil, nil
	}
	if n <= len(positional) && !fn.HasKwargs() {
		keys := make([]string, 0, dict.Len())
		for _, k := range dict.Keys() {
			keys = append(keys, plainText(k))
		}
		return nil, nil, &hostError{kind: "interpretation", msg: fmt.Sprintf("%s takes no args, but args were given (%s): declare them, e.g. def %s(plan, %s)", name, strings.Join(keys, ", "), name, keys[0]), pos: pos}
	}
	if !fn.HasKwargs() {
		named := n
		if fn.HasVarargs() {
			named--
		}
		known := map[string]bool{}
		for i := 0; i < named; i++ {
			p, _ := fn.Param(i)
			known[p] = true
		}
		for _, k := range dict.Keys() {
			if ks, ok := k.(starlark.String); !ok || !known[string(ks)] {
				return nil, nil, &hostError{kind: "interpretation", msg: fmt.Sprintf("function %s got an unexpected keyword argument %s (from args)", name, k), pos: pos}
			}
		}
	}
	var kwargs []starlark.Tuple
	for _, kv := range dict.Items() {
		kwargs = append(kwargs, starlark.Tuple{kv[0], kv[1]})
	}
	return positional, kwargs, nil
}

// ---- errors ----

func frames(stack starlark.CallStack) ([]string, string) {
	var out []string
	pos := ""
	for _, fr := range stack {
		if fr.Pos.Filename() == "<builtin>" {
			continue
		}
		out = append(out, fmt.Sprintf("%s: in %s", fr.Pos.String(), fr.Name))
		pos = fr.Pos.String()
	}
	if out == nil {
		out = []string{}
	}
	return out, pos
}

func (ip *interp) convertError(err error) []*hostError {
	var stack []string
	pos := ""
	var ee *starlark.EvalError
	if errors.As(err, &ee) {
		stack, pos = frames(ee.CallStack)
	}
	var se syntax.Error
	if errors.As(err, &se) {
		return []*hostError{{kind: "syntax", msg: se.Msg, pos: se.Pos.String(), stack: stack}}
	}
	var rl resolve.ErrorList
	if errors.As(err, &rl) {
		out := make([]*hostError, 0, len(rl))
		for _, re := range rl {
			out = append(out, &hostError{kind: "syntax", msg: re.Msg, pos: re.Pos.String(), stack: stack})
		}
		return out
	}
	if ee != nil {
		if atomic.LoadInt32(&ip.timedOut) == 1 && strings.Contains(ee.Msg, "cancelled") {
			return []*hostError{{kind: "limit", msg: fmt.Sprintf("interpretation took longer than %d ms", ip.req.TimeoutMS), pos: pos, stack: stack}}
		}
		if ip.thread != nil && ip.thread.ExecutionSteps() >= uint64(ip.req.MaxSteps) && strings.Contains(ee.Msg, "too many steps") {
			return []*hostError{{kind: "limit", msg: fmt.Sprintf("the package ran more than %d Starlark steps: an infinite loop?", ip.req.MaxSteps), pos: pos, stack: stack}}
		}
	}
	var he *hostError
	if errors.As(err, &he) {
		e := *he
		if e.pos == "" {
			e.pos = pos
		}
		if e.stack == nil {
			e.stack = stack
		}
		return []*hostError{&e}
	}
	msg := err.Error()
	if ee != nil {
		msg = ee.Msg
	}
	return []*hostError{{kind: "interpretation", msg: msg, pos: pos, stack: stack}}
}

// ---- the commands ----

func writeReply(w io.Writer, v *OMap) {
	var b bytes.Buffer
	if err := writeJSON(&b, v); err != nil {
		b.Reset()
		e := &hostError{kind: "interpretation", msg: err.Error()}
		m := &OMap{}
		m.Set("errors", []interface{}{e.json()})
		_ = writeJSON(&b, m)
	}
	b.WriteByte('\n')
	_, _ = w.Write(b.Bytes())
}

func errorsReply(errs []*hostError) *OMap {
	list := make([]interface{}, len(errs))
	for i, e := range errs {
		list[i] = e.json()
	}
	m := &OMap{}
	m.Set("errors", list)
	return m
}

// runInterpret handles `interpret`; it returns the exit code.
func runInterpret(in io.Reader, out, errw io.Writer) int {
	data, err := io.ReadAll(in)
	if err != nil {
		fmt.Fprintf(errw, "modhost-starlark: reading the request: %v\n", err)
		return 2
	}
	req, err := parseRequest(data)
	if err != nil {
		fmt.Fprintf(errw, "modhost-starlark: bad request: %v\n", err)
		return 2
	}
	plan, errs := newInterp(req).interpret()
	if errs != nil {
		writeReply(out, errorsReply(errs))
		return 1
	}
	m := &OMap{}
	m.Set("plan", plan)
	writeReply(out, m)
	return 0
}

type renderRequest struct {
	Template *string         `json:"template"`
	Data     json.RawMessage `json:"data"`
	Name     string          `json:"name"`
}

func runRender(in io.Reader, out, errw io.Writer) int {
	data, err := io.ReadAll(in)
	if err != nil {
		fmt.Fprintf(errw, "modhost-starlark: reading the request: %v\n", err)
		return 2
	}
	var req renderRequest
	if err := json.Unmarshal(data, &req); err != nil || req.Template == nil {
		fmt.Fprintf(errw, "modhost-starlark: bad request: want {\"template\": S, \"data\": JSON}\n")
		return 2
	}
	var v interface{}
	if len(bytes.TrimSpace(req.Data)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(req.Data))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			fmt.Fprintf(errw, "modhost-starlark: bad request: data: %v\n", err)
			return 2
		}
		v = plainJSONToGo(v)
	}
	name := req.Name
	if name == "" {
		name = "template"
	}
	content, err := renderTemplate(name, *req.Template, v, 64<<20)
	if err != nil {
		writeReply(out, errorsReply([]*hostError{{kind: "interpretation", msg: err.Error()}}))
		return 1
	}
	m := &OMap{}
	m.Set("content", content)
	writeReply(out, m)
	return 0
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	switch os.Args[1] {
	case "interpret":
		os.Exit(runInterpret(os.Stdin, os.Stdout, os.Stderr))
	case "render":
		os.Exit(runRender(os.Stdin, os.Stdout, os.Stderr))
	case "-h", "--help", "help":
		fmt.Print(usage)
	default:
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
}
