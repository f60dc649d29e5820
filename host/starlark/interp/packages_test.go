package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestImportModuleRelativeAndRoot(t *testing.T) {
	r := planOf(t, `
a = import_module("./lib/a.star")
b = import_module("lib/a.star")
c = import_module("/lib/a.star")
d = import_module("github.com/test/pkg/lib/a.star")
def run(plan):
    a.deploy(plan)
    return [a.value, a.b_value, a == b, a == c, a == d]
`, map[string]string{
		"lib/a.star": `
b = import_module("../other/b.star")
value = "a"
b_value = b.value
def deploy(plan):
    plan.print("from a")
`,
		"other/b.star": `value = "b"`,
	})
	jsonEq(t, "modules", r.Plan.Output, `["a", "b", true, true, true]`)
	if p := instr(t, r, 0)["position"]; p != "lib/a.star:6:15" {
		t.Fatalf("position in an imported file: %v", p)
	}
}

func TestImportModuleOtherPackages(t *testing.T) {
	deps := t.TempDir()
	writeTree(t, deps, map[string]string{
		"org/lib/kurtosis.yml":      "name: github.com/org/lib\n",
		"org/lib/src/lib.star":      "helper = import_module(\"./helper.star\")\nname = \"lib \" + helper.x\ndef go(plan):\n    plan.print(name)\n",
		"org/lib/src/helper.star":   "x = \"helper\"\n",
		"org/lib/static/conf.txt":   "conf",
		"org/longer/kurtosis.yml":   "name: github.com/org/lib/sub\n",
		"org/longer/x.star":         "v = \"sub\"\n",
		"a/b/c/d/deep/kurtosis.yml": "name: github.com/too/deep\n",
		"a/b/three/kurtosis.yml":    "name: github.com/three/levels\n",
		"a/b/three/t.star":          "v = 3\n",
		"replaced/kurtosis.yml":     "name: github.com/me/fork\n",
		"replaced/r.star":           "v = \"replaced\"\n",
		"versioned/kurtosis.yml":    "name: github.com/real/target\n",
		"versioned/v.star":          "v = \"via locator\"\n",
		"alone-pkg/kurtosis.yml":    "name: github.com/alone/pkg\n",
		"alone-pkg/a.star":          "v = 1\n",
	})
	dir := newPackage(t, "github.com/test/main", `
lib = import_module("github.com/org/lib/src/lib.star")
sub = import_module("github.com/org/lib/sub/x.star")
three = import_module("github.com/three/levels/t.star@v1.0")
rep = import_module("github.com/upstream/thing/r.star")
loc = import_module("github.com/old/name/v.star")
def run(plan):
    lib.go(plan)
    return [lib.name, sub.v, three.v, rep.v, loc.v, read_file("github.com/org/lib/static/conf.txt")]
`, map[string]string{"kurtosis.yml": `name: github.com/test/main
description: test
replace:
  github.com/upstream/thing: ` + filepath.Join(deps, "replaced") + `
  github.com/old/name: github.com/real/target@main
`})
	r := interpretRequest(t, map[string]interface{}{"package_dir": dir, "package_dirs": []string{filepath.Join(deps, "org"), filepath.Join(deps, "a"), filepath.Join(deps, "versioned")}})
	if r.code != 0 {
		t.Fatalf("%s", r.raw)
	}
	jsonEq(t, "modules", r.Plan.Output, `["lib helper", "sub", 3, "replaced", "via locator", "conf"]`)
	if p := instr(t, r, 0)["position"]; p != "github.com/org/lib/src/lib.star:4:15" {
		t.Fatalf("position in another package: %v", p)
	}
	if r.Plan.Package != "github.com/test/main" {
		t.Fatalf("package %q", r.Plan.Package)
	}

	// A relative replace path, and a package too deep to be found.
	dir = newPackage(t, "github.com/test/rel", `
x = import_module("github.com/dep/x/a.star")
def run(plan):
    return x.v
`, map[string]string{"kurtosis.yml": "name: github.com/test/rel\nreplace:\n  github.com/dep/x: ./vendor/x\n", "vendor/x/a.star": "v = \"vendored\"\n"})
	r = runPackage(t, dir, "")
	jsonEq(t, "relative replace", r.Plan.Output, `"vendored"`)

	r = interpretRequest(t, map[string]interface{}{"package_dir": newPackage(t, "github.com/test/m", `
def run(plan):
    import_module("github.com/too/deep/x.star")
`, nil), "package_dirs": []string{filepath.Join(deps, "a")}})
	wantError(t, r, "package", `no package provides "github.com/too/deep/x.star"; looked in the main package github.com/test/m`, "main.star:3:18")
	if !strings.Contains(r.Errors[0].Message, "package dir "+filepath.Join(deps, "a")+" (github.com/three/levels)") ||
		!strings.Contains(r.Errors[0].Message, "replace entries (none)") {
		t.Fatalf("places: %s", r.Errors[0].Message)
	}
	// A package dir that is itself a package.
	r = interpretRequest(t, map[string]interface{}{"package_dir": newPackage(t, "github.com/test/m", `
a = import_module("github.com/alone/pkg/a.star")
def run(plan):
    return a.v
`, nil), "package_dirs": []string{filepath.Join(deps, "alone-pkg")}})
	jsonEq(t, "package dir is a package", r.Plan.Output, `1`)
}

func TestImportModuleErrors(t *testing.T) {
	r := errorsOf(t, `
a = import_module("./a.star")
def run(plan):
    pass
`, map[string]string{"a.star": "b = import_module(\"./b.star\")\n", "b.star": "m = import_module(\"main.star\")\n"})
	wantError(t, r, "interpretation", "import cycle: main.star -> a.star -> b.star -> main.star", "b.star:1:18")
	want := []string{"main.star:2:18: in <toplevel>", "a.star:1:18: in <toplevel>", "b.star:1:18: in <toplevel>"}
	if strings.Join(r.Errors[0].Stack, "|") != strings.Join(want, "|") {
		t.Fatalf("stack %v", r.Errors[0].Stack)
	}

	r = errorsOf(t, "\ndef run(plan):\n    import_module(\"./missing.star\")\n", nil)
	wantError(t, r, "package", "missing.star does not exist", "main.star:3:18")
	r = errorsOf(t, "\ndef run(plan):\n    import_module(\"../outside.star\")\n", nil)
	wantError(t, r, "package", `locator "../outside.star" leaves its package`, "main.star:3:18")
	r = errorsOf(t, "\ndef run(plan):\n    import_module(\"github.com/test/pkg/../../x.star\")\n", nil)
	wantError(t, r, "package", "leaves its package", "main.star:3:18")

	// Errors inside an imported file: its position, the import in the stack.
	r = errorsOf(t, "m = import_module(\"./bad.star\")\ndef run(plan):\n    pass\n", map[string]string{"bad.star": "x = 1\ny = (\n"})
	wantError(t, r, "syntax", "", "bad.star:3:1")
	if len(r.Errors[0].Stack) != 1 || r.Errors[0].Stack[0] != "main.star:1:18: in <toplevel>" {
		t.Fatalf("stack %v", r.Errors[0].Stack)
	}
	r = errorsOf(t, "m = import_module(\"./bad.star\")\ndef run(plan):\n    pass\n", map[string]string{"bad.star": "x = 1\nfail(\"in module\")\n"})
	wantError(t, r, "interpretation", "fail: in module", "bad.star:2:5")

	// A symlinked module pointing outside the package.
	outside := t.TempDir()
	writeTree(t, outside, map[string]string{"evil.star": "x = 1\n"})
	dir := newPackage(t, "github.com/test/pkg", "m = import_module(\"./evil.star\")\ndef run(plan):\n    pass\n", nil)
	if err := os.Symlink(filepath.Join(outside, "evil.star"), filepath.Join(dir, "evil.star")); err != nil {
		t.Fatal(err)
	}
	wantError(t, runPackage(t, dir, ""), "package", "outside its package", "main.star:1:18")
}

func TestReadFile(t *testing.T) {
	r := planOf(t, `
a = read_file("./data/a.txt")
def run(plan):
    return [a, read_file(src = "/data/a.txt"), import_module("./data/m.star").v]
`, map[string]string{"data/a.txt": "A\n", "data/m.star": "v = read_file(\"a.txt\")\n"})
	jsonEq(t, "read_file", r.Plan.Output, `["A\n", "A\n", "A\n"]`)
	wantError(t, errorsOf(t, "\ndef run(plan):\n    read_file(\"nope.txt\")\n", nil), "package", "nope.txt does not exist", "main.star:3:14")
	wantError(t, errorsOf(t, "\ndef run(plan):\n    read_file(\"../x\")\n", nil), "package", "leaves its package", "main.star:3:14")
	wantError(t, errorsOf(t, "\ndef run(plan):\n    read_file(\"github.com/unknown/x/y\")\n", nil), "package", `no package provides "github.com/unknown/x/y"`, "main.star:3:14")
	wantError(t, errorsOf(t, "\ndef run(plan):\n    read_file(src = 1)\n", nil), "interpretation", "read_file: for parameter src: got int, want string", "main.star:3:14")
	dir := newPackage(t, "github.com/test/pkg", "\ndef run(plan):\n    read_file(\"big\")\n", map[string]string{"big": strings.Repeat("x", 200)})
	r = interpretRequest(t, map[string]interface{}{"package_dir": dir, "max_file_bytes": 100})
	wantError(t, r, "limit", "more than max_file_bytes (100)", "main.star:3:14")
}

func TestScript(t *testing.T) {
	dir := writeTree(t, t.TempDir(), map[string]string{
		"s.star":         "h = import_module(\"./helpers/h.star\")\ndef run(plan, name = \"x\"):\n    plan.print(h.greet(name))\n",
		"helpers/h.star": "def greet(n):\n    return \"hi \" + n\n",
	})
	r := interpretRequest(t, map[string]interface{}{"script": filepath.Join(dir, "s.star"), "args": map[string]interface{}{"name": "bob"}})
	if r.code != 0 {
		t.Fatalf("%s", r.raw)
	}
	if r.Plan.Package != "" || r.Plan.MainFile != "s.star" || instr(t, r, 0)["position"] != "s.star:3:15" {
		t.Fatalf("script plan: %s", r.raw)
	}
	jsonEq(t, "print", args(t, r, 0), `{"msg": "hi bob"}`)
	r = interpretRequest(t, map[string]interface{}{"script": filepath.Join(dir, "s.star")})
	jsonEq(t, "default", args(t, r, 0), `{"msg": "hi x"}`)
}

func TestMainArgs(t *testing.T) {
	// def run(plan, args): the whole dict, in order.
	dir := newPackage(t, "github.com/test/pkg", "def run(plan, args):\n    return args\n", nil)
	r := runPackage(t, dir, `{"z": 1, "a": {"y": [1, 2.5, null, true]}, "m": "s"}`)
	if !strings.Contains(r.raw, `"output":{"z":1,"a":{"y":[1,2.5,null,true]},"m":"s"}`) {
		t.Fatalf("args order: %s", r.raw)
	}
	r = runPackage(t, dir, "")
	jsonEq(t, "empty args", r.Plan.Output, `{}`)
	// Keyword arguments.
	dir = newPackage(t, "github.com/test/pkg", "def run(plan, count, name = \"n\"):\n    return [count, name]\n", nil)
	jsonEq(t, "kwargs", runPackage(t, dir, `{"count": 3}`).Plan.Output, `[3, "n"]`)
	r = runPackage(t, dir, `{"count": 3, "colour": "red"}`)
	wantError(t, r, "interpretation", `unexpected keyword argument "colour"`, "main.star:1:1")
	r = runPackage(t, dir, ``)
	wantError(t, r, "interpretation", "missing 1 argument (count)", "main.star:1:1")
	// args with a struct.
	dir = newPackage(t, "github.com/test/pkg", "def run(plan, args):\n    return args[\"s\"].x\n", nil)
	jsonEq(t, "struct", runPackage(t, dir, `{"s": {"_kurtosis_parser": "struct", "x": 7}}`).Plan.Output, `7`)
	// Only plan, with args.
	dir = newPackage(t, "github.com/test/pkg", "def run(plan):\n    return None\n", nil)
	wantError(t, runPackage(t, dir, `{"a": 1}`), "interpretation", "run takes no args, but args were given (a)", "main.star:1:1")
	if r := runPackage(t, dir, `{}`); r.code != 0 || r.Plan.Output != nil || !strings.Contains(r.raw, `"output":null`) {
		t.Fatalf("None output: %s", r.raw)
	}
	// No plan parameter at all.
	dir = newPackage(t, "github.com/test/pkg", "def run():\n    return 1\n", nil)
	jsonEq(t, "no params", runPackage(t, dir, "").Plan.Output, `1`)
	// The first parameter must be plan.
	dir = newPackage(t, "github.com/test/pkg", "def run(p):\n    return 1\n", nil)
	wantError(t, runPackage(t, dir, ""), "interpretation", "the first parameter of run must be named 'plan', not 'p'", "main.star:1:1")
	// Custom main file and function.
	dir = newPackage(t, "github.com/test/pkg", "", map[string]string{"other/entry.star": "def go(plan, n):\n    plan.print(str(n))\n"})
	r = interpretRequest(t, map[string]interface{}{"package_dir": dir, "main_file": "other/entry.star", "main_function": "go", "args": map[string]int{"n": 4}})
	if r.code != 0 || r.Plan.MainFile != "other/entry.star" || instr(t, r, 0)["position"] != "other/entry.star:2:15" {
		t.Fatalf("custom main: %s", r.raw)
	}
	wantError(t, interpretRequest(t, map[string]interface{}{"package_dir": dir, "main_function": "nope"}), "interpretation", "no function nope found in main.star", "main.star")
	// A value that has no JSON form.
	dir = newPackage(t, "github.com/test/pkg", "def run(plan):\n    return run\n", nil)
	wantError(t, runPackage(t, dir, ""), "interpretation", "cannot convert function to JSON", "main.star:1:1")
}

func TestPackageErrors(t *testing.T) {
	dir := writeTree(t, t.TempDir(), map[string]string{"main.star": "def run(plan):\n    pass\n"})
	wantError(t, runPackage(t, dir, ""), "package", "has no kurtosis.yml", "")
	writeTree(t, dir, map[string]string{"kurtosis.yml": "description: no name\n"})
	wantError(t, runPackage(t, dir, ""), "package", "`name:` is missing", "")
	writeTree(t, dir, map[string]string{"kurtosis.yml": "name: [unclosed\n"})
	wantError(t, runPackage(t, dir, ""), "package", "kurtosis.yml", "")
	dir = newPackage(t, "github.com/test/pkg", "", nil)
	_ = os.Remove(filepath.Join(dir, "main.star"))
	wantError(t, runPackage(t, dir, ""), "package", "the main file main.star is missing", "")
}

func TestBadRequests(t *testing.T) {
	dir := newPackage(t, "github.com/test/pkg", "def run(plan):\n    pass\n", nil)
	for _, req := range []map[string]interface{}{
		{},
		{"package_dir": dir, "script": filepath.Join(dir, "main.star")},
		{"package_dir": "relative/dir"},
		{"package_dir": filepath.Join(dir, "nope")},
		{"script": dir},
		{"package_dir": dir, "args": []int{1}},
		{"package_dir": dir, "max_steps": -1},
		{"package_dir": dir, "main_file": "../x.star"},
	} {
		if r := interpretRequest(t, req); r.code != 2 || r.stderr == "" {
			t.Fatalf("%v: want exit 2, got %d %s", req, r.code, r.raw)
		}
	}
}

func TestDeterministic(t *testing.T) {
	dir := newPackage(t, "github.com/test/pkg", `
def run(plan, args):
    names = []
    for i in range(5):
        names.append(plan.upload_files("./f"))
        names.append(plan.store_service_files("s", "/x"))
        names.append(plan.render_templates({"a": struct(template = "{{.}}", data = i)}))
        names.append(plan.run_sh(run = "true").files_artifacts)
    return {"names": names, "args": args}
`, map[string]string{"f": "x"})
	r1 := runPackage(t, dir, `{"b": 1, "a": 2}`)
	r2 := runPackage(t, dir, `{"b": 1, "a": 2}`)
	if r1.code != 0 || r1.raw != r2.raw {
		t.Fatalf("plans differ:\n%s\n%s", r1.raw, r2.raw)
	}
	seen := map[string]bool{}
	for _, n := range r1.Plan.Output.(map[string]interface{})["names"].([]interface{}) {
		if s, ok := n.(string); ok {
			if seen[s] {
				t.Fatalf("name %s given twice", s)
			}
			seen[s] = true
		}
	}
}
