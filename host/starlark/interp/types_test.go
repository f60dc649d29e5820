package main

import (
	"testing"
)

func TestTypeAttributesAndCanonicalForm(t *testing.T) {
	r := planOf(t, `
def run(plan):
    p = PortSpec(8080, transport_protocol = "udp")
    p2 = PortSpec(number = 1, transport_protocol = "TCP", wait = "15s")
    p3 = PortSpec(2, wait = None)
    c = ServiceConfig(image = "x", ports = {"a": p}, cmd = [], max_cpu = 0, user = User(1))
    rc = ReadyCondition(GetHttpRequestRecipe("http", "/"), "code", "==", 200, timeout = "1m")
    d = Directory(artifact_names = ["x"])
    d2 = Directory(artifact_name = "old")
    s = StoreSpec(src = "/a")
    post = PostHttpRequestRecipe(port_id = "p", endpoint = "/", body = "b")
    return {
        "p": [p.number, p.transport_protocol, p.application_protocol, p.wait, str(p)],
        "p2": str(p2), "p3": [str(p3), p3.wait],
        "c": [c.image, c.ports["a"].number, c.cmd, c.max_cpu, c.user.uid, c.user.gid, c.ready_conditions, c.subnetwork,
              c.private_ip_address_placeholder, str(c)],
        "rc": [rc.recipe.endpoint, rc.interval, rc.timeout, rc.target_value, str(rc)],
        "d": [d.artifact_names, d.persistent_key, str(d), str(d2)],
        "s": [s.src, s.name, str(s)],
        "post": [post.content_type, post.body, str(post)],
        "eq": [PortSpec(1) == PortSpec(number = 1), PortSpec(1) == PortSpec(2), type(p)],
    }
`, nil)
	jsonEq(t, "attributes", r.Plan.Output, `{
	  "p": [8080, "UDP", "", "15s", "PortSpec(number=8080, transport_protocol=\"UDP\")"],
	  "p2": "PortSpec(number=1)",
	  "p3": ["PortSpec(number=2, wait=None)", null],
	  "c": ["x", 8080, [], 0, 1, null, null, "default", "KURTOSIS_IP_ADDR_PLACEHOLDER",
	        "ServiceConfig(image=\"x\", ports={\"a\": PortSpec(number=8080, transport_protocol=\"UDP\")}, user=User(uid=1))"],
	  "rc": ["/", "1s", "1m", 200, "ReadyCondition(recipe=GetHttpRequestRecipe(port_id=\"http\", endpoint=\"/\"), field=\"code\", assertion=\"==\", target_value=200, timeout=\"1m\")"],
	  "d": [["x"], "", "Directory(artifact_names=[\"x\"])", "Directory(artifact_name=\"old\")"],
	  "s": ["/a", "", "StoreSpec(src=\"/a\")"],
	  "post": ["application/json", "b", "PostHttpRequestRecipe(port_id=\"p\", endpoint=\"/\", body=\"b\")"],
	  "eq": [true, false, "PortSpec"]}`)
}

func TestTypeErrors(t *testing.T) {
	cases := []struct{ src, msg, pos string }{
		{`PortSpec(number = "80")`, "PortSpec: for parameter number: got string, want int", "main.star:3:13"},
		{`PortSpec(0)`, "PortSpec: for parameter number: 0 is out of range 1..65535", "main.star:3:13"},
		{`PortSpec(65536)`, "PortSpec: for parameter number: 65536 is out of range 1..65535", "main.star:3:13"},
		{`PortSpec(80, "icmp")`, `PortSpec: for parameter transport_protocol: "icmp" is not a transport protocol`, "main.star:3:13"},
		{`PortSpec(80, application_protocol = "h t")`, `PortSpec: for parameter application_protocol: "h t" is not an application protocol`, "main.star:3:13"},
		{`PortSpec(80, wait = "soon")`, `PortSpec: for parameter wait: "soon" is not a duration`, "main.star:3:13"},
		{`PortSpec(80, wait = 5)`, `PortSpec: for parameter wait: got int, want duration string or None`, "main.star:3:13"},
		{`PortSpec()`, "PortSpec: missing argument for number", "main.star:3:13"},
		{`PortSpec(80, colour = "red")`, `PortSpec: unexpected keyword argument "colour"`, "main.star:3:13"},
		{`ServiceConfig(image = 5)`, "ServiceConfig: for parameter image: got int, want string", "main.star:3:18"},
		{`ServiceConfig(image = "x", ports = {"a": 80})`, `ServiceConfig: for parameter ports: value of key "a": got int, want PortSpec`, "main.star:3:18"},
		{`ServiceConfig(image = "x", files = {"/a": 1})`, `ServiceConfig: for parameter files: value of key "/a": got int, want string or Directory`, "main.star:3:18"},
		{`ServiceConfig(image = "x", labels = {"bad key": "v"})`, `ServiceConfig: for parameter labels: key "bad key": not a valid label key`, "main.star:3:18"},
		{`ServiceConfig(image = "x", ready_conditions = "no")`, "ServiceConfig: for parameter ready_conditions: got string, want ReadyCondition", "main.star:3:18"},
		{`ServiceConfig(image = "x", max_cpu = -1)`, "ServiceConfig: for parameter max_cpu: -1 is out of range: must be at least 0", "main.star:3:18"},
		{`ReadyCondition(ExecRecipe(["x"]), "body", "==", 0)`, `ReadyCondition: field "body" is not a result of ExecRecipe`, "main.star:3:19"},
		{`ReadyCondition(ExecRecipe(["x"]), "code", "IN", 0)`, "ReadyCondition: assertion IN needs a list, tuple or dict as target_value", "main.star:3:19"},
		{`ReadyCondition(ExecRecipe(["x"]), "code", "==", 0, interval = "x")`, `ReadyCondition: for parameter interval: "x" is not a duration`, "main.star:3:19"},
		{`ExecRecipe(command = "ls")`, "ExecRecipe: for parameter command: got string, want list of string", "main.star:3:15"},
		{`GetHttpRequestRecipe(port_id = "p")`, "GetHttpRequestRecipe: missing argument for endpoint", "main.star:3:25"},
		{`Directory()`, "Directory: give artifact_names or persistent_key", "main.star:3:14"},
		{`Directory(artifact_names = ["a"], persistent_key = "k")`, "Directory: give artifact_names or persistent_key, not both", "main.star:3:14"},
		{`User(uid = "0")`, "User: for parameter uid: got string, want int", "main.star:3:9"},
		{`StoreSpec(src = "")`, "StoreSpec: for parameter src: must not be empty", "main.star:3:14"},
		{`{PortSpec(1): 1}`, "unhashable type: PortSpec", "main.star:3:17"},
	}
	for _, c := range cases {
		r := errorsOf(t, "\ndef run(plan):\n    "+c.src+"\n", nil)
		wantError(t, r, "interpretation", c.msg, c.pos)
	}
}

func TestPredeclared(t *testing.T) {
	r := planOf(t, `
def run(plan):
    s = struct(a = 1, b = [2])
    enc = json.encode({"k": s})
    dec = json.decode('{"x": [1, 2.5, "y", null]}')
    return {"s": s, "enc": enc, "dec": dec, "ind": json.indent('{"a":1}'), "k": type(kurtosis), "none": None}
`, nil)
	jsonEq(t, "predeclared", r.Plan.Output, `{"s": {"a": 1, "b": [2]}, "enc": "{\"k\":{\"a\":1,\"b\":[2]}}",
	  "dec": {"x": [1, 2.5, "y", null]}, "ind": "{\n\t\"a\": 1\n}", "k": "module", "none": null}`)
	for _, c := range []struct{ src, kind, msg, pos string }{
		{`print("x")`, "interpretation", "print() is not available: use plan.print(msg) instead", "main.star:3:10"},
		{`time.now()`, "syntax", "undefined: time", "main.star:3:5"},
	} {
		wantError(t, errorsOf(t, "\ndef run(plan):\n    "+c.src+"\n", nil), c.kind, c.msg, c.pos)
	}
}
