package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// writeTree writes files (slash paths relative to dir) and returns dir.
func writeTree(t *testing.T, dir string, files map[string]string) string {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// newPackage writes a package named name with files; main.star is the
// given source.
func newPackage(t *testing.T, name, main string, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	all := map[string]string{"kurtosis.yml": "name: " + name + "\n", "main.star": main}
	for k, v := range files {
		all[k] = v
	}
	return writeTree(t, dir, all)
}

type reply struct {
	raw    string
	code   int
	stderr string
	Plan   *struct {
		Version      int                      `json:"version"`
		Package      string                   `json:"package"`
		MainFile     string                   `json:"main_file"`
		Instructions []map[string]interface{} `json:"instructions"`
		Output       interface{}              `json:"output"`
	} `json:"plan"`
	Errors []struct {
		Kind     string   `json:"kind"`
		Message  string   `json:"message"`
		Position string   `json:"position"`
		Stack    []string `json:"stack"`
	} `json:"errors"`
}

func interpretRequest(t *testing.T, req map[string]interface{}) *reply {
	t.Helper()
	data, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var out, errw bytes.Buffer
	code := runInterpret(bytes.NewReader(data), &out, &errw)
	r := &reply{raw: out.String(), code: code, stderr: errw.String()}
	if code != 2 {
		if !json.Valid(out.Bytes()) {
			t.Fatalf("reply is not JSON: %s", out.String())
		}
		if err := json.Unmarshal(out.Bytes(), r); err != nil {
			t.Fatalf("reply %s: %v", out.String(), err)
		}
	}
	return r
}

func runPackage(t *testing.T, dir string, args string) *reply {
	t.Helper()
	req := map[string]interface{}{"package_dir": dir}
	if args != "" {
		req["args"] = json.RawMessage(args)
	}
	return interpretRequest(t, req)
}

// planOf runs main (in a package named github.com/test/pkg) and wants
// success.
func planOf(t *testing.T, main string, files map[string]string) *reply {
	t.Helper()
	r := runPackage(t, newPackage(t, "github.com/test/pkg", main, files), "")
	if r.code != 0 {
		t.Fatalf("exit %d: %s%s", r.code, r.raw, r.stderr)
	}
	return r
}

// errorsOf runs main and wants a failure.
func errorsOf(t *testing.T, main string, files map[string]string) *reply {
	t.Helper()
	r := runPackage(t, newPackage(t, "github.com/test/pkg", main, files), "")
	if r.code != 1 || len(r.Errors) == 0 {
		t.Fatalf("want errors (exit 1), got exit %d: %s%s", r.code, r.raw, r.stderr)
	}
	return r
}

// wantError checks the first error's kind, a part of its message and its
// position.
func wantError(t *testing.T, r *reply, kind, msgPart, pos string) {
	t.Helper()
	e := r.Errors[0]
	if e.Kind != kind || !strings.Contains(e.Message, msgPart) || (pos != "" && e.Position != pos) {
		t.Fatalf("want %s error containing %q at %s, got %s %q at %s (stack %v)", kind, msgPart, pos, e.Kind, e.Message, e.Position, e.Stack)
	}
}

func instr(t *testing.T, r *reply, i int) map[string]interface{} {
	t.Helper()
	if i >= len(r.Plan.Instructions) {
		t.Fatalf("want instruction %d, have %d: %s", i, len(r.Plan.Instructions), r.raw)
	}
	return r.Plan.Instructions[i]
}

func args(t *testing.T, r *reply, i int) map[string]interface{} {
	t.Helper()
	return instr(t, r, i)["args"].(map[string]interface{})
}

// jsonEq compares got with the JSON text want.
func jsonEq(t *testing.T, what string, got interface{}, want string) {
	t.Helper()
	var w interface{}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want %s: %v", want, err)
	}
	g, _ := json.Marshal(got)
	var gn interface{}
	_ = json.Unmarshal(g, &gn)
	if !reflect.DeepEqual(gn, w) {
		t.Fatalf("%s:\n got %s\nwant %s", what, g, want)
	}
}
