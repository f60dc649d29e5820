package main

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const fullConfig = `ServiceConfig(
        image = "postgres:15",
        ports = {"pg": PortSpec(number = 5432, transport_protocol = "udp", application_protocol = "postgresql", wait = None)},
        public_ports = {"pg": PortSpec(15432)},
        files = {"/data": "art1", "/multi": Directory(artifact_names = ["a", "b"]), "/p": Directory(persistent_key = "k")},
        entrypoint = ["/bin/sh", "-c"],
        cmd = ["echo hi"],
        env_vars = {"A": "1", "B": "2"},
        private_ip_address_placeholder = "IP_HERE",
        max_cpu = 500, min_cpu = 100, max_memory = 512, min_memory = 64,
        ready_conditions = ReadyCondition(recipe = ExecRecipe(command = ["true"]), field = "code", assertion = "==", target_value = 0),
        labels = {"tier": "db"},
        user = User(uid = 999, gid = 998),
        subnetwork = "s1",
    )`

func TestAddServiceArgs(t *testing.T) {
	r := planOf(t, `
def run(plan):
    db = plan.add_service(name = "db", config = `+fullConfig+`)
    return db
`, nil)
	in := instr(t, r, 0)
	if in["kind"] != "add_service" || in["position"] != "main.star:3:26" {
		t.Fatalf("kind/position: %v %v", in["kind"], in["position"])
	}
	if in["description"] != "Adding service with name 'db' and image 'postgres:15'" {
		t.Fatalf("description %q", in["description"])
	}
	jsonEq(t, "config", args(t, r, 0)["config"], `{
	  "image": "postgres:15",
	  "ports": {"pg": {"number": 5432, "transport_protocol": "UDP", "application_protocol": "postgresql", "wait": null}},
	  "public_ports": {"pg": {"number": 15432, "transport_protocol": "TCP", "application_protocol": "", "wait": "15s"}},
	  "files": {"/data": {"artifact_names": ["art1"], "persistent_key": ""},
	            "/multi": {"artifact_names": ["a", "b"], "persistent_key": ""},
	            "/p": {"artifact_names": [], "persistent_key": "k"}},
	  "entrypoint": ["/bin/sh", "-c"], "cmd": ["echo hi"], "env_vars": {"A": "1", "B": "2"},
	  "private_ip_address_placeholder": "IP_HERE",
	  "max_cpu": 500, "min_cpu": 100, "max_memory": 512, "min_memory": 64,
	  "ready_conditions": {"recipe": {"type": "exec", "command": ["true"], "extract": {}}, "field": "code",
	                       "assertion": "==", "target_value": 0, "interval": "1s", "timeout": "15m"},
	  "labels": {"tier": "db"}, "user": {"uid": 999, "gid": 998}, "subnetwork": "s1"}`)
	jsonEq(t, "output", r.Plan.Output, `{"name": "db", "hostname": "db", "ip_address": "{{modhost:0:ip_address}}",
	  "ports": {"pg": {"number": 5432, "transport_protocol": "UDP", "application_protocol": "postgresql", "wait": null}}}`)
	// key order follows the Starlark dicts
	if !strings.Contains(r.raw, `"env_vars":{"A":"1","B":"2"}`) || !strings.Contains(r.raw, `"files":{"/data":`) {
		t.Fatalf("key order: %s", r.raw)
	}
}

func TestAddServicePositionalAndDefaults(t *testing.T) {
	r := planOf(t, `
def run(plan):
    s = plan.add_service("web", ServiceConfig("nginx", {"http": PortSpec(80, "TCP", "http")}))
    return [s.name, s.hostname, s.ip_address, s.ports["http"].number, s.ports["http"].application_protocol, str(s.ports["http"])]
`, nil)
	in := instr(t, r, 0)
	want := `add_service(name="web", config=ServiceConfig(image="nginx", ports={"http": PortSpec(number=80, application_protocol="http")}))`
	if in["text"] != want {
		t.Fatalf("text\n got %s\nwant %s", in["text"], want)
	}
	jsonEq(t, "defaults", args(t, r, 0)["config"], `{"image": "nginx",
	  "ports": {"http": {"number": 80, "transport_protocol": "TCP", "application_protocol": "http", "wait": "15s"}},
	  "public_ports": {}, "files": {}, "entrypoint": [], "cmd": [], "env_vars": {},
	  "private_ip_address_placeholder": "KURTOSIS_IP_ADDR_PLACEHOLDER",
	  "max_cpu": 0, "min_cpu": 0, "max_memory": 0, "min_memory": 0,
	  "ready_conditions": null, "labels": {}, "user": null, "subnetwork": "default"}`)
	jsonEq(t, "service", r.Plan.Output, `["web", "web", "{{modhost:0:ip_address}}", 80, "http", "PortSpec(number=80, application_protocol=\"http\")"]`)
}

func TestAddServiceErrors(t *testing.T) {
	cases := []struct{ src, msg, pos string }{
		{`plan.add_service(name = "Bad_Name", config = ServiceConfig(image = "x"))`, `add_service: for parameter name: "Bad_Name" is not a valid service name`, "main.star:3:21"},
		{`plan.add_service(name = "ends-", config = ServiceConfig(image = "x"))`, `is not a valid service name`, "main.star:3:21"},
		{`plan.add_service(name = "a" + "b" * 63, config = ServiceConfig(image = "x"))`, `is not a valid service name`, "main.star:3:21"},
		{`plan.add_service(name = "db")`, "add_service: missing argument for config", "main.star:3:21"},
		{`plan.add_service(name = "db", config = "x")`, "add_service: for parameter config: got string, want ServiceConfig", "main.star:3:21"},
		{`plan.add_service("db", ServiceConfig(image = "x"), "d", 4)`, "add_service: got 4 arguments, want at most 3", "main.star:3:21"},
		{`plan.add_service(nme = "db", config = ServiceConfig(image = "x"))`, `add_service: unexpected keyword argument "nme" (did you mean "name"?)`, "main.star:3:21"},
		{`plan.add_service("db", name = "db", config = ServiceConfig(image = "x"))`, "add_service: got multiple values for parameter name", "main.star:3:21"},
		{`plan.add_service(name = "db", config = ServiceConfig(image = "x", env_vars = {"A": 1}))`, `ServiceConfig: for parameter env_vars: value of key "A": got int, want string`, "main.star:3:57"},
		{`plan.add_service(name = "db", config = ServiceConfig(image = "x", cmd = ["a", 2]))`, `ServiceConfig: for parameter cmd: element 1: got int, want string`, "main.star:3:57"},
		{`plan.add_service(name = "db", config = ServiceConfig(image = "x", max_memory = 2))`, `ServiceConfig: max_memory is 2 MB: must be at least 6`, "main.star:3:57"},
		{`plan.add_service(name = "db", config = ServiceConfig(ports = {}))`, `ServiceConfig: missing argument for image`, "main.star:3:57"},
	}
	for _, c := range cases {
		r := errorsOf(t, "\ndef run(plan):\n    "+c.src+"\n", nil)
		wantError(t, r, "interpretation", c.msg, c.pos)
		if len(r.Errors[0].Stack) != 1 || r.Errors[0].Stack[0] != c.pos+": in run" {
			t.Fatalf("stack %v", r.Errors[0].Stack)
		}
	}
}

func TestAddServicesAndGetService(t *testing.T) {
	r := planOf(t, `
def run(plan):
    svcs = plan.add_services(configs = {
        "b": ServiceConfig(image = "x", ports = {"p": PortSpec(1)}),
        "a": ServiceConfig(image = "y"),
    })
    g = plan.get_service(name = "b")
    u = plan.get_service("unknown")
    plan.stop_service("b")
    plan.start_service(name = "b")
    plan.remove_service("b", description = "bye")
    return {"b": svcs["b"].ip_address, "a": svcs["a"].hostname, "keys": list(svcs.keys()),
            "g": g.ip_address, "gp": g.ports["p"].number, "up": len(u.ports), "un": u.name}
`, nil)
	if !strings.Contains(r.raw, `"configs":{"b":{"image":"x"`) || !strings.Contains(r.raw, `},"a":{"image":"y"`) {
		t.Fatalf("configs order: %s", r.raw)
	}
	if d := instr(t, r, 0)["description"]; d != "Adding '2' services with names 'b, a'" {
		t.Fatalf("description %q", d)
	}
	jsonEq(t, "output", r.Plan.Output, `{"b": "{{modhost:0:b.ip_address}}", "a": "a", "keys": ["b", "a"],
	  "g": "{{modhost:1:ip_address}}", "gp": 1, "up": 0, "un": "unknown"}`)
	for i, want := range []struct{ kind, desc string }{
		{"get_service", "Fetching service 'b'"}, {"get_service", "Fetching service 'unknown'"},
		{"stop_service", "Stopping service 'b'"}, {"start_service", "Starting service 'b'"},
		{"remove_service", "bye"},
	} {
		in := instr(t, r, i+1)
		if in["kind"] != want.kind || in["description"] != want.desc {
			t.Fatalf("instruction %d: %v %v", i+1, in["kind"], in["description"])
		}
		jsonEq(t, "args", in["args"], `{"name": "`+map[bool]string{true: "unknown", false: "b"}[i == 1]+`"}`)
	}
	r = errorsOf(t, `
def run(plan):
    plan.add_services({"ok": ServiceConfig(image = "x"), "NO": ServiceConfig(image = "y")})
`, nil)
	wantError(t, r, "interpretation", `add_services: for parameter configs: key "NO": "NO" is not a valid service name`, "main.star:3:22")
}

func TestExecRequestWait(t *testing.T) {
	r := planOf(t, `
def run(plan):
    e = plan.exec("db", ExecRecipe(["ls", "-l"], {"n": "fromjson | .n"}))
    e2 = plan.exec(service_name = "db", recipe = ExecRecipe(command = ["x"]), acceptable_codes = [0, 1], skip_code_check = True)
    g = plan.request("web", GetHttpRequestRecipe("http", "/ping", {"v": ".v"}, {"H": "1"}))
    p = plan.request(service_name = "web", recipe = PostHttpRequestRecipe("http", "/post", "{}", "text/plain"), acceptable_codes = [201])
    w = plan.wait("web", GetHttpRequestRecipe(port_id = "http", endpoint = "/"), "code", "==", 200)
    w2 = plan.wait(service_name = "db", recipe = ExecRecipe(command = ["x"], extract = {"k": "."}), field = "extract.k",
                   assertion = "!=", target_value = "", interval = "500ms", timeout = None)
    return [e, e2["code"], g, p["body"], w, w2]
`, nil)
	jsonEq(t, "exec", args(t, r, 0), `{"service_name": "db",
	  "recipe": {"type": "exec", "command": ["ls", "-l"], "extract": {"n": "fromjson | .n"}},
	  "acceptable_codes": [0], "skip_code_check": false}`)
	jsonEq(t, "exec2", args(t, r, 1), `{"service_name": "db", "recipe": {"type": "exec", "command": ["x"], "extract": {}},
	  "acceptable_codes": [0, 1], "skip_code_check": true}`)
	jsonEq(t, "get", args(t, r, 2), `{"service_name": "web",
	  "recipe": {"type": "get", "port_id": "http", "endpoint": "/ping", "extract": {"v": ".v"}, "headers": {"H": "1"}},
	  "acceptable_codes": [200, 201, 202, 203, 204, 205, 206, 207, 208, 226], "skip_code_check": false}`)
	jsonEq(t, "post", args(t, r, 3), `{"service_name": "web",
	  "recipe": {"type": "post", "port_id": "http", "endpoint": "/post", "body": "{}", "content_type": "text/plain", "extract": {}, "headers": {}},
	  "acceptable_codes": [201], "skip_code_check": false}`)
	jsonEq(t, "wait", args(t, r, 4), `{"service_name": "web",
	  "recipe": {"type": "get", "port_id": "http", "endpoint": "/", "extract": {}, "headers": {}},
	  "field": "code", "assertion": "==", "target_value": 200, "interval": "1s", "timeout": "10s"}`)
	jsonEq(t, "wait2", args(t, r, 5), `{"service_name": "db",
	  "recipe": {"type": "exec", "command": ["x"], "extract": {"k": "."}},
	  "field": "extract.k", "assertion": "!=", "target_value": "", "interval": "500ms", "timeout": null}`)
	jsonEq(t, "results", r.Plan.Output, `[
	  {"code": "{{modhost:0:code}}", "output": "{{modhost:0:output}}", "extract.n": "{{modhost:0:extract.n}}"},
	  "{{modhost:1:code}}",
	  {"code": "{{modhost:2:code}}", "body": "{{modhost:2:body}}", "extract.v": "{{modhost:2:extract.v}}"},
	  "{{modhost:3:body}}",
	  {"code": "{{modhost:4:code}}", "body": "{{modhost:4:body}}"},
	  {"code": "{{modhost:5:code}}", "output": "{{modhost:5:output}}", "extract.k": "{{modhost:5:extract.k}}"}]`)
	descs := []string{
		"Executing command on service 'db'", "Executing command on service 'db'",
		"Running 'GET' request on service 'web'", "Running 'POST' request on service 'web'",
		"Waiting for at most '10s' for service 'web' to reach a certain state",
		"Waiting for service 'db' to reach a certain state",
	}
	for i, d := range descs {
		if got := instr(t, r, i)["description"]; got != d {
			t.Fatalf("description %d: %q", i, got)
		}
	}
	post := PostHttpRequestRecipeDefaults(t)
	jsonEq(t, "post defaults", post, `{"type": "post", "port_id": "p", "endpoint": "/", "body": "", "content_type": "application/json", "extract": {}, "headers": {}}`)

	bad := []struct{ src, msg, pos string }{
		{`plan.exec("db", GetHttpRequestRecipe(port_id = "p", endpoint = "/"))`, "exec: for parameter recipe: got GetHttpRequestRecipe, want ExecRecipe", "main.star:3:14"},
		{`plan.request("db", ExecRecipe(command = ["x"]))`, "request: for parameter recipe: got ExecRecipe, want GetHttpRequestRecipe or PostHttpRequestRecipe", "main.star:3:17"},
		{`plan.exec("db", ExecRecipe(command = ["x"]), acceptable_codes = ["0"])`, "exec: for parameter acceptable_codes: element 0: got string, want int", "main.star:3:14"},
		{`plan.exec("db", ExecRecipe(command = []))`, "ExecRecipe: command must not be empty", "main.star:3:31"},
		{`plan.wait("db", ExecRecipe(command = ["x"]), "body", "==", 0)`, `wait: field "body" is not a result of ExecRecipe`, "main.star:3:14"},
		{`plan.wait("db", ExecRecipe(command = ["x"]), "code", "===", 0)`, `wait: for parameter assertion: "===" is not an assertion`, "main.star:3:14"},
		{`plan.wait("db", ExecRecipe(command = ["x"]), "code", "==", 0, "1x")`, `wait: for parameter interval: "1x" is not a duration`, "main.star:3:14"},
		{`plan.wait("db", ExecRecipe(command = ["x"]), "code", "==")`, `wait: missing argument for target_value`, "main.star:3:14"},
	}
	for _, c := range bad {
		wantError(t, errorsOf(t, "\ndef run(plan):\n    "+c.src+"\n", nil), "interpretation", c.msg, c.pos)
	}
}

// PostHttpRequestRecipeDefaults returns the JSON of a recipe with only the
// required arguments.
func PostHttpRequestRecipeDefaults(t *testing.T) interface{} {
	r := planOf(t, `
def run(plan):
    plan.request("s", PostHttpRequestRecipe(port_id = "p", endpoint = "/"))
`, nil)
	return args(t, r, 0)["recipe"]
}

func TestVerifyAssertPrint(t *testing.T) {
	r := planOf(t, `
def run(plan):
    e = plan.exec("db", ExecRecipe(["x"]))
    plan.verify(e["code"], "==", 0)
    plan.assert(value = e["output"], assertion = "IN", target_value = ["a", "b"])
    plan.verify(value = 1, assertion = "NOT_IN", target_value = (2, 3), description = "custom")
    plan.print("hello " + e["output"])
    plan.print(msg = {"a": [1, None]})
    plan.print(42)
`, nil)
	jsonEq(t, "verify", args(t, r, 1), `{"value": "{{modhost:0:code}}", "assertion": "==", "target_value": 0}`)
	in := instr(t, r, 2)
	if in["kind"] != "verify" || !strings.HasPrefix(in["text"].(string), "assert(") {
		t.Fatalf("assert: %v %v", in["kind"], in["text"])
	}
	jsonEq(t, "assert", in["args"], `{"value": "{{modhost:0:output}}", "assertion": "IN", "target_value": ["a", "b"]}`)
	if d := instr(t, r, 1)["description"]; d != "Verifying whether '{{modhost:0:code}}' '==' '0'" {
		t.Fatalf("verify description %q", d)
	}
	if d := instr(t, r, 3)["description"]; d != "custom" {
		t.Fatalf("custom description %q", d)
	}
	jsonEq(t, "print", args(t, r, 4), `{"msg": "hello {{modhost:0:output}}"}`)
	jsonEq(t, "print dict", args(t, r, 5), `{"msg": "{\"a\": [1, None]}"}`)
	jsonEq(t, "print int", args(t, r, 6), `{"msg": "42"}`)
	if d := instr(t, r, 4)["description"]; d != "Printing a message" {
		t.Fatalf("print description %q", d)
	}
	wantError(t, errorsOf(t, "\ndef run(plan):\n    plan.verify(1, \"IN\", 2)\n", nil), "interpretation",
		"verify: assertion IN needs a list, tuple or dict as target_value, got int", "main.star:3:16")
	wantError(t, errorsOf(t, "\ndef run(plan):\n    plan.assert(1, \"~\", 2)\n", nil), "interpretation",
		`assert: for parameter assertion: "~" is not an assertion: want one of "==", "!=", ">=", ">", "<=", "<", "IN", "NOT_IN"`, "main.star:3:16")
	wantError(t, errorsOf(t, "\ndef run(plan):\n    plan.print(\"x\", description = \"\")\n", nil), "interpretation",
		"print: for parameter description: must not be empty", "main.star:3:15")
	wantError(t, errorsOf(t, "\ndef run(plan):\n    plan.print()\n", nil), "interpretation",
		"print: missing argument for msg", "main.star:3:15")
}

func TestDescriptionLastPositional(t *testing.T) {
	r := planOf(t, `
def run(plan):
    plan.print("m", "my description")
    plan.remove_service("x", "gone")
`, nil)
	if instr(t, r, 0)["description"] != "my description" || instr(t, r, 1)["description"] != "gone" {
		t.Fatalf("descriptions: %s", r.raw)
	}
	if instr(t, r, 0)["text"] != `print(msg="m")` {
		t.Fatalf("text %v", instr(t, r, 0)["text"])
	}
}

func TestUploadFiles(t *testing.T) {
	dir := newPackage(t, "github.com/test/up", `
def run(plan):
    a = plan.upload_files(src = "./static")
    b = plan.upload_files("static/sub/b.sh", name = "single")
    names = [plan.upload_files("/static/a.txt") for i in range(2)]
    return [a, b] + names
`, map[string]string{"static/a.txt": "hello", "static/sub/b.sh": "#!/bin/sh\n", "static/c/d.txt": "d"})
	if err := os.Chmod(filepath.Join(dir, "static/sub/b.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := runPackage(t, dir, "")
	if r.code != 0 {
		t.Fatalf("%s", r.raw)
	}
	a := args(t, r, 0)
	b64 := base64.StdEncoding.EncodeToString
	jsonEq(t, "dir", a["files"], `[
	  {"path": "a.txt", "mode": 420, "content_base64": "`+b64([]byte("hello"))+`"},
	  {"path": "c/d.txt", "mode": 420, "content_base64": "`+b64([]byte("d"))+`"},
	  {"path": "sub/b.sh", "mode": 493, "content_base64": "`+b64([]byte("#!/bin/sh\n"))+`"}]`)
	if a["src"] != "./static" || !strings.HasPrefix(a["name"].(string), "upload-") || len(a["name"].(string)) != len("upload-")+8 {
		t.Fatalf("upload args: %v", a)
	}
	jsonEq(t, "single", args(t, r, 1)["files"], `[{"path": "b.sh", "mode": 493, "content_base64": "`+b64([]byte("#!/bin/sh\n"))+`"}]`)
	out := r.Plan.Output.([]interface{})
	if out[1] != "single" || out[2] == out[3] || out[0] != a["name"] {
		t.Fatalf("names: %v", out)
	}
	if d := instr(t, r, 1)["description"]; d != "Uploading file 'static/sub/b.sh' to files artifact 'single'" {
		t.Fatalf("description %q", d)
	}
	// A rerun gives the same plan, byte for byte.
	if r2 := runPackage(t, dir, ""); r2.raw != r.raw {
		t.Fatalf("not deterministic")
	}

	// Leaving the package, lexically or through a symlink.
	outside := t.TempDir()
	writeTree(t, outside, map[string]string{"secret.txt": "s"})
	dir = newPackage(t, "github.com/test/up", "\ndef run(plan):\n    plan.upload_files(\"./link\")\n", nil)
	if err := os.Symlink(filepath.Join(outside, "secret.txt"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	r = runPackage(t, dir, "")
	wantError(t, r, "package", "outside its package", "main.star:3:22")
	wantError(t, errorsOf(t, "\ndef run(plan):\n    plan.upload_files(\"../x\")\n", nil), "package", `locator "../x" leaves its package`, "main.star:3:22")
	wantError(t, errorsOf(t, "\ndef run(plan):\n    plan.upload_files(\"./nothing\")\n", nil), "package", "nothing does not exist", "main.star:3:22")
	// A symlinked file inside a folder tree that points outside is skipped.
	dir = newPackage(t, "github.com/test/up", "\ndef run(plan):\n    plan.upload_files(\"./d\")\n", map[string]string{"d/in.txt": "i"})
	_ = os.Symlink(filepath.Join(outside, "secret.txt"), filepath.Join(dir, "d", "out.txt"))
	r = runPackage(t, dir, "")
	jsonEq(t, "skipped", args(t, r, 0)["files"], `[{"path": "in.txt", "mode": 420, "content_base64": "aQ=="}]`)

	// max_file_bytes caps the total.
	dir = newPackage(t, "github.com/test/up", "\ndef run(plan):\n    plan.upload_files(\"./a\")\n    plan.upload_files(\"./b\")\n",
		map[string]string{"a": strings.Repeat("x", 60), "b": strings.Repeat("y", 60)})
	r = interpretRequest(t, map[string]interface{}{"package_dir": dir, "max_file_bytes": 100})
	wantError(t, r, "limit", "max_file_bytes", "main.star:4:22")
}

func TestRenderTemplates(t *testing.T) {
	r := planOf(t, `
def run(plan):
    svc = plan.add_service("db", ServiceConfig(image = "x"))
    n = plan.render_templates(config = {
        "conf/app.yml": struct(template = "host: {{.host}}\nport: {{.port}}\n{{range .peers}}- {{.}}\n{{end}}{{if .on}}on{{end}} {{.ratio}} {{.nested.k}}", data = {
            "host": svc.ip_address, "port": 8080, "peers": ["a", "b"], "on": True, "ratio": 0.5, "nested": struct(k = "v")}),
        "/abs/x.txt": struct(template = "{{.}}", data = "plain"),
    })
    m = plan.render_templates({"f": struct(template = "x", data = {})}, "named")
    return [n, m]
`, nil)
	a := args(t, r, 1)
	jsonEq(t, "files", a["files"], `[
	  {"path": "conf/app.yml", "mode": 420, "content": "host: {{modhost:0:ip_address}}\nport: 8080\n- a\n- b\non 0.5 v"},
	  {"path": "/abs/x.txt", "mode": 420, "content": "plain"}]`)
	name := a["name"].(string)
	if !strings.HasPrefix(name, "templates-") || r.Plan.Output.([]interface{})[0] != name || r.Plan.Output.([]interface{})[1] != "named" {
		t.Fatalf("names %v %v", name, r.Plan.Output)
	}
	if d := instr(t, r, 1)["description"]; d != "Rendering a template to a files artifact with name '"+name+"'" {
		t.Fatalf("description %q", d)
	}
	wantError(t, errorsOf(t, "\ndef run(plan):\n    plan.render_templates({\"a\": struct(template = \"{{.x\", data = {})})\n", nil),
		"interpretation", "render_templates: template a:", "main.star:3:26")
	wantError(t, errorsOf(t, "\ndef run(plan):\n    plan.render_templates({\"a\": struct(template = \"{{.x.y.z}}\", data = {\"x\": 1})})\n", nil),
		"interpretation", "render_templates: template a:", "main.star:3:26")
	wantError(t, errorsOf(t, "\ndef run(plan):\n    plan.render_templates({\"a\": \"just a string\"})\n", nil),
		"interpretation", `render_templates: for parameter config: value of key "a": got string, want struct(template=..., data=...)`, "main.star:3:26")
}

func TestStoreServiceFiles(t *testing.T) {
	r := planOf(t, `
def run(plan):
    a = plan.store_service_files("db", "/data")
    b = plan.store_service_files(service_name = "db", src = "/etc/x", name = "etc")
    return [a, b]
`, nil)
	a := args(t, r, 0)
	if a["service_name"] != "db" || a["src"] != "/data" || !strings.HasPrefix(a["name"].(string), "files-") {
		t.Fatalf("args %v", a)
	}
	jsonEq(t, "named", args(t, r, 1), `{"service_name": "db", "src": "/etc/x", "name": "etc"}`)
	if d := instr(t, r, 1)["description"]; d != "Storing files from service 'db' at path '/etc/x' to files artifact with name 'etc'" {
		t.Fatalf("description %q", d)
	}
	jsonEq(t, "returns", r.Plan.Output, `["`+a["name"].(string)+`", "etc"]`)
}

func TestRunSh(t *testing.T) {
	r := planOf(t, `
def run(plan):
    a = plan.run_sh("echo hi")
    b = plan.run_sh(run = "make", image = "alpine", files = {"/src": "art"}, store = ["/out/*", StoreSpec(src = "/log", name = "logs")],
                    env_vars = {"K": "V"}, wait = None, name = "builder", acceptable_codes = [0, 2], skip_code_check = True)
    c = plan.run_sh("x" * 100, "busybox")
    return [a.code, a.output, a.files_artifacts, b.files_artifacts, b.code]
`, nil)
	a := args(t, r, 0)
	name := a["name"].(string)
	if !strings.HasPrefix(name, "task-") {
		t.Fatalf("task name %q", name)
	}
	jsonEq(t, "defaults", a, `{"name": "`+name+`", "run": "echo hi", "image": "badouralix/curl-jq", "files": {}, "store": [],
	  "env_vars": {}, "wait": "180s", "acceptable_codes": [0], "skip_code_check": false}`)
	b := args(t, r, 1)
	store0 := b["store"].([]interface{})[0].(map[string]interface{})["name"].(string)
	jsonEq(t, "full", b, `{"name": "builder", "run": "make", "image": "alpine", "files": {"/src": "art"},
	  "store": [{"src": "/out/*", "name": "`+store0+`"}, {"src": "/log", "name": "logs"}],
	  "env_vars": {"K": "V"}, "wait": null, "acceptable_codes": [0, 2], "skip_code_check": true}`)
	if args(t, r, 2)["image"] != "busybox" {
		t.Fatalf("second positional is image: %v", args(t, r, 2))
	}
	jsonEq(t, "result", r.Plan.Output, `["{{modhost:0:code}}", "{{modhost:0:output}}", [], ["`+store0+`", "logs"], "{{modhost:1:code}}"]`)
	if d := instr(t, r, 0)["description"]; d != "Running sh script: `echo hi`" {
		t.Fatalf("description %q", d)
	}
	if d := instr(t, r, 2)["description"]; d != "Running sh script" {
		t.Fatalf("long description %q", d)
	}
	wantError(t, errorsOf(t, "\ndef run(plan):\n    plan.run_sh(run = \"x\", store = [1])\n", nil), "interpretation",
		"run_sh: for parameter store: element 0: got int, want string or StoreSpec", "main.star:3:16")
	wantError(t, errorsOf(t, "\ndef run(plan):\n    plan.run_sh(image = \"x\")\n", nil), "interpretation",
		"run_sh: missing argument for run", "main.star:3:16")
}

func TestConnections(t *testing.T) {
	r := planOf(t, `
def run(plan):
    plan.set_connection(config = kurtosis.connection.BLOCKED)
    plan.set_connection(kurtosis.connection.ALLOWED)
    plan.set_connection(("s1", "s2"), ConnectionConfig(packet_loss_percentage = 12.5, packet_delay_distribution = UniformPacketDelayDistribution(100)))
    plan.set_connection(subnetworks = ["s1", "s3"], config = ConnectionConfig(50, NormalPacketDelayDistribution(mean_ms = 10, std_dev_ms = 3, correlation = 20)))
    plan.set_connection(config = ConnectionConfig(packet_delay_distribution = UniformPacketDelayDistribution(ms = 5, jitter_ms = 2)))
    plan.remove_connection(("s1", "s2"))
    return str(kurtosis.connection.BLOCKED)
`, nil)
	jsonEq(t, "blocked", args(t, r, 0), `{"subnetworks": null, "config": {"packet_loss_percentage": 100, "delay": null}}`)
	jsonEq(t, "allowed", args(t, r, 1), `{"subnetworks": null, "config": {"packet_loss_percentage": 0, "delay": null}}`)
	jsonEq(t, "uniform", args(t, r, 2), `{"subnetworks": ["s1", "s2"], "config": {"packet_loss_percentage": 12.5,
	  "delay": {"distribution": "uniform", "ms": 100, "jitter_ms": 0}}}`)
	jsonEq(t, "normal", args(t, r, 3), `{"subnetworks": ["s1", "s3"], "config": {"packet_loss_percentage": 50,
	  "delay": {"distribution": "normal", "mean_ms": 10, "std_dev_ms": 3, "correlation": 20}}}`)
	jsonEq(t, "jitter", args(t, r, 4)["config"], `{"packet_loss_percentage": 0, "delay": {"distribution": "uniform", "ms": 5, "jitter_ms": 2}}`)
	jsonEq(t, "remove", args(t, r, 5), `{"subnetworks": ["s1", "s2"]}`)
	if r.Plan.Output != "ConnectionConfig(packet_loss_percentage=100.0)" {
		t.Fatalf("canonical %v", r.Plan.Output)
	}
	for _, c := range []struct{ src, msg string }{
		{`ConnectionConfig(packet_loss_percentage = 101)`, "ConnectionConfig: for parameter packet_loss_percentage: 101 is out of range 0..100"},
		{`NormalPacketDelayDistribution(1, 1, correlation = -1)`, "NormalPacketDelayDistribution: for parameter correlation: -1 is out of range 0..100"},
		{`UniformPacketDelayDistribution(-5)`, "UniformPacketDelayDistribution: for parameter ms: -5 is out of range: must be at least 0"},
		{`UniformPacketDelayDistribution()`, "UniformPacketDelayDistribution: missing argument for ms"},
		{`plan.set_connection(("a",), kurtosis.connection.ALLOWED)`, "set_connection: for parameter subnetworks: got tuple, want a pair of subnetwork names"},
		{`plan.set_connection(("a", "b"))`, "set_connection: missing argument for config"},
		{`plan.remove_connection()`, "remove_connection: missing argument for subnetworks"},
	} {
		wantError(t, errorsOf(t, "\ndef run(plan):\n    "+c.src+"\n", nil), "interpretation", c.msg, "")
	}
}

func TestExecModule(t *testing.T) {
	r := planOf(t, `
def run(plan):
    a = plan.exec_module("postgres", params = {"z": 1, "a": [True, None]}, load_params = struct(b = 2, a = "x"), timeout = "2m")
    b = plan.exec_module(module = "redis", params = '{"raw": 1}')
    c = plan.exec_module("m")
    return [a["result"], b]
`, nil)
	jsonEq(t, "full", args(t, r, 0), `{"module": "postgres", "params": "{\"z\":1,\"a\":[true,null]}", "load_params": "{\"a\":\"x\",\"b\":2}", "timeout": "2m"}`)
	jsonEq(t, "string", args(t, r, 1), `{"module": "redis", "params": "{\"raw\": 1}", "load_params": "{}", "timeout": null}`)
	jsonEq(t, "defaults", args(t, r, 2), `{"module": "m", "params": "{}", "load_params": "{}", "timeout": null}`)
	jsonEq(t, "result", r.Plan.Output, `["{{modhost:0:result}}", {"result": "{{modhost:1:result}}"}]`)
	if d := instr(t, r, 0)["description"]; d != "Executing module 'postgres'" {
		t.Fatalf("description %q", d)
	}
	wantError(t, errorsOf(t, "\ndef run(plan):\n    plan.exec_module(\"m\", params = \"{bad\")\n", nil), "interpretation",
		`exec_module: for parameter params: "{bad" is not JSON text`, "main.star:3:21")
	wantError(t, errorsOf(t, "\ndef run(plan):\n    plan.exec_module(\"m\", params = [1])\n", nil), "interpretation",
		"exec_module: for parameter params: got list, want dict, struct or string", "main.star:3:21")
}

func TestResultsAreFrozen(t *testing.T) {
	r := errorsOf(t, `
def run(plan):
    e = plan.exec("db", ExecRecipe(["x"]))
    e["code"] = 1
`, nil)
	wantError(t, r, "interpretation", "frozen", "main.star:4:6")
}
