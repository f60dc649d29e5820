package main

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.starlark.net/starlark"
)

func TestSyntaxErrors(t *testing.T) {
	r := errorsOf(t, "def run(plan):\n    x = [1,\n", nil)
	wantError(t, r, "syntax", "want", "main.star:3:1")
	if len(r.Errors[0].Stack) != 0 {
		t.Fatalf("stack %v", r.Errors[0].Stack)
	}
	// The resolver reports every error of the file.
	r = errorsOf(t, "def run(plan):\n    a = missing_one\n    b = missing_two\n", nil)
	if len(r.Errors) != 2 || r.Errors[0].Position != "main.star:2:9" || r.Errors[1].Position != "main.star:3:9" ||
		r.Errors[0].Kind != "syntax" || !strings.Contains(r.Errors[1].Message, "undefined: missing_two") {
		t.Fatalf("errors: %s", r.raw)
	}
	r = errorsOf(t, "def run(plan):\n    while True:\n        pass\n", nil)
	wantError(t, r, "syntax", "while", "main.star:2:5")
}

func TestInterpretationErrors(t *testing.T) {
	cases := []struct{ src, msg, pos string }{
		{"plan.foo()", "plan has no .foo field or method", "main.star:3:9"},
		{"plan.run_python(run = \"x\")", "plan has no .run_python field or method", "main.star:3:9"},
		{"fail(\"stop here\")", "fail: stop here", "main.star:3:9"},
		{"x = {}[\"k\"]", `key "k" not in dict`, "main.star:3:11"},
		{"x = 1 + \"a\"", "unknown binary op: int + string", "main.star:3:11"},
		{"load_something()", "undefined: load_something", "main.star:3:5"},
	}
	for _, c := range cases {
		r := errorsOf(t, "\ndef run(plan):\n    "+c.src+"\n", nil)
		kind := "interpretation"
		if strings.HasPrefix(c.msg, "undefined") {
			kind = "syntax"
		}
		wantError(t, r, kind, c.msg, c.pos)
	}
	// The stack lists the calls, outermost first.
	r := errorsOf(t, `
def helper(plan, n):
    plan.add_service(name = n, config = ServiceConfig(image = 1))

def run(plan):
    helper(plan, "db")
`, nil)
	wantError(t, r, "interpretation", "ServiceConfig: for parameter image: got int, want string", "main.star:3:54")
	if strings.Join(r.Errors[0].Stack, "|") != "main.star:6:11: in run|main.star:3:54: in helper" {
		t.Fatalf("stack %v", r.Errors[0].Stack)
	}
	r = errorsOf(t, "load(\"other.star\", \"x\")\ndef run(plan):\n    pass\n", nil)
	wantError(t, r, "interpretation", "load() is not available: use `m = import_module(", "main.star:1:1")
}

func TestLimits(t *testing.T) {
	dir := newPackage(t, "github.com/test/pkg", "def spin():\n    for i in range(1000000000000):\n        pass\n\ndef run(plan):\n    spin()\n", nil)
	r := interpretRequest(t, map[string]interface{}{"package_dir": dir, "max_steps": 50000})
	wantError(t, r, "limit", "the package ran more than 50000 Starlark steps: an infinite loop?", "main.star:2:5")
	if strings.Join(r.Errors[0].Stack, "|") != "main.star:6:9: in run|main.star:2:5: in spin" {
		t.Fatalf("stack %v", r.Errors[0].Stack)
	}
	start := time.Now()
	r = interpretRequest(t, map[string]interface{}{"package_dir": dir, "max_steps": int64(1) << 50, "timeout_ms": 100})
	wantError(t, r, "limit", "interpretation took longer than 100 ms", "main.star:2:5")
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("timeout took %v", d)
	}
	// Steps spent at the top level of an imported module count too.
	dir = newPackage(t, "github.com/test/pkg", "m = import_module(\"./m.star\")\ndef run(plan):\n    pass\n",
		map[string]string{"m.star": "x = [i for i in range(1000000)]\n"})
	r = interpretRequest(t, map[string]interface{}{"package_dir": dir, "max_steps": 1000})
	wantError(t, r, "limit", "more than 1000 Starlark steps", "m.star:1:8")
}

func TestPanicBecomesError(t *testing.T) {
	ip := newInterp(&request{MaxSteps: 1000, TimeoutMS: 1000, MaxFileBytes: 1000})
	b := ip.builtin("boom", func(*starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error) {
		var m map[string]int
		m["x"] = 1 // panics
		return starlark.None, nil
	})
	_, err := starlark.Call(&starlark.Thread{}, b, nil, nil)
	var he *hostError
	if !errors.As(err, &he) || he.kind != "interpretation" || !strings.Contains(he.msg, "internal error in boom") {
		t.Fatalf("err %v", err)
	}
}

func TestRenderCommand(t *testing.T) {
	var out, errw bytes.Buffer
	code := runRender(strings.NewReader(`{"template": "{{.a}}-{{index .b 1}}-{{.c}}", "data": {"a": 1, "b": ["x", "y"], "c": 2.5}}`), &out, &errw)
	if code != 0 || strings.TrimSpace(out.String()) != `{"content":"1-y-2.5"}` {
		t.Fatalf("render: %d %s %s", code, out.String(), errw.String())
	}
	out.Reset()
	if code := runRender(strings.NewReader(`{"template": "{{.a"}`), &out, &errw); code != 1 || !strings.Contains(out.String(), `"kind":"interpretation"`) {
		t.Fatalf("render error: %d %s", code, out.String())
	}
	if code := runRender(strings.NewReader(`[]`), &out, &errw); code != 2 {
		t.Fatalf("bad render request: %d", code)
	}
}

func TestJSONWriter(t *testing.T) {
	m := &OMap{}
	m.Set("z", "a\"b\\c\n\x01\u00e9\xff")
	m.Set("a", []interface{}{int64(1), 2.5, 100.0, nil, true, bigNum("123456789012345678901234567890")})
	b, err := marshalJSON(m)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"z":"a\"b\\c\n\u0001` + "\u00e9" + `\ufffd","a":[1,2.5,100.0,null,true,123456789012345678901234567890]}`
	if string(b) != want {
		t.Fatalf("\n got %s\nwant %s", b, want)
	}
	v, err := fromJSON([]byte(`{"b": [1, 1.5, 12345678901234567890123, "s", null, false], "a": {}}`))
	if err != nil {
		t.Fatal(err)
	}
	if v.String() != `{"b": [1, 1.5, 12345678901234567890123, "s", None, False], "a": {}}` {
		t.Fatalf("decoded %s", v)
	}
}

// BenchmarkInterpret200 interprets a package of 200 instructions.
func BenchmarkInterpret200(b *testing.B) {
	dir := b.TempDir()
	writeTree(&testing.T{}, dir, map[string]string{"kurtosis.yml": "name: github.com/bench/pkg\n", "main.star": benchPackage(200)})
	req := []byte(fmt.Sprintf(`{"package_dir": %q}`, dir))
	for i := 0; i < b.N; i++ {
		var out, errw bytes.Buffer
		if code := runInterpret(bytes.NewReader(req), &out, &errw); code != 0 {
			b.Fatalf("exit %d: %s", code, out.String())
		}
	}
}

// benchPackage: n instructions, a mix of add_service, exec, wait, print,
// render_templates and verify.
func benchPackage(n int) string {
	var sb strings.Builder
	sb.WriteString("def run(plan, args):\n    out = {}\n")
	fmt.Fprintf(&sb, "    for i in range(%d):\n", n/5)
	sb.WriteString(`        name = "svc-%d" % i
        s = plan.add_service(name = name, config = ServiceConfig(
            image = "nginx:latest", ports = {"http": PortSpec(8080, application_protocol = "http")},
            env_vars = {"INDEX": str(i), "PEER": name}, cmd = ["run", "--port", "8080"],
            ready_conditions = ReadyCondition(recipe = GetHttpRequestRecipe(port_id = "http", endpoint = "/health"),
                field = "code", assertion = "==", target_value = 200)))
        r = plan.exec(service_name = name, recipe = ExecRecipe(command = ["echo", s.ip_address]))
        plan.wait(service_name = name, recipe = GetHttpRequestRecipe(port_id = "http", endpoint = "/"), field = "code", assertion = "==", target_value = 200)
        plan.render_templates(config = {"cfg.yml": struct(template = "ip: {{.ip}}\nindex: {{.i}}\n", data = {"ip": s.ip_address, "i": i})})
        plan.verify(r["code"], "==", 0)
        out[name] = s.ip_address
    return out
`)
	return sb.String()
}

func TestBenchPackageSize(t *testing.T) {
	dir := newPackage(t, "github.com/bench/pkg", benchPackage(200), nil)
	r := runPackage(t, dir, "")
	if r.code != 0 || len(r.Plan.Instructions) != 200 {
		t.Fatalf("bench package: %d instructions, %s", len(r.Plan.Instructions), r.raw[:200])
	}
}
