package policy

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/dockplug/dockplug/authz"
)

// corpusCase is one line of ../shared/authz-corpus/{deny,allow}.jsonl.
type corpusCase struct {
	ID     string        `json:"id"`
	Family string        `json:"family"`
	Why    string        `json:"why"`
	Source string        `json:"source"`
	Req    authz.Request `json:"req"`
}

// corpusDir is ../shared/authz-corpus relative to the repository root.
func corpusDir(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	dir := filepath.Join(root, "..", "shared", "authz-corpus")
	if _, err := os.Stat(filepath.Join(dir, "deny.jsonl")); err != nil {
		if os.Getenv("DOCKPLUG_E2E") == "require" {
			t.Fatalf("bypass corpus missing (DOCKPLUG_E2E=require): %v", err)
		}
		t.Skipf("bypass corpus not found at %s: %v", dir, err)
	}
	return dir
}

func readCases(t *testing.T, path string) []corpusCase {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []corpusCase
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<20), 16<<20)
	for sc.Scan() {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var c corpusCase
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, c)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func baselineAllow(t *testing.T) *Policy {
	t.Helper()
	p, err := Compile(&File{Presets: []string{"baseline"}, Default: "allow"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSharedCorpus: every case of the shared bypass corpus under
// presets: [baseline], default: allow.
func TestSharedCorpus(t *testing.T) {
	dir := corpusDir(t)
	p := baselineAllow(t)
	for _, file := range []string{"deny.jsonl", "allow.jsonl"} {
		wantAllow := file == "allow.jsonl"
		cases := readCases(t, filepath.Join(dir, file))
		pass := 0
		for _, c := range cases {
			// Through the wire types, as the daemon sends it.
			raw, _ := json.Marshal(c.Req)
			var req authz.Request
			if err := json.Unmarshal(raw, &req); err != nil {
				t.Fatal(err)
			}
			d := p.Decide(context.Background(), &req, false)
			if d.Allow != wantAllow {
				t.Errorf("%s %s (%s): allow=%v by %s (%s), want %v", file, c.ID, c.Family, d.Allow, d.Rule, d.Message, wantAllow)
				continue
			}
			if testing.Verbose() {
				t.Logf("%s %s: %s", file, c.ID, d.Rule)
			}
			pass++
		}
		t.Logf("%s: %d/%d pass", file, pass, len(cases))
	}
}

// TestOwnCases: dockplug's own bypass cases (testdata/cases.jsonl), each
// citing the daemon code, CVE or issue that makes it work.
func TestOwnCases(t *testing.T) {
	p := baselineAllow(t)
	f, err := os.ReadFile("testdata/cases.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range splitLines(f) {
		var c struct {
			corpusCase
			Want string `json:"want"`
		}
		if err := json.Unmarshal(line, &c); err != nil {
			t.Fatal(err)
		}
		if c.Source == "" || c.ID == "" {
			t.Errorf("case %q: needs an id and a source", c.ID)
		}
		n++
		d := p.Decide(context.Background(), &c.Req, false)
		if d.Allow != (c.Want == "allow") {
			t.Errorf("%s: allow=%v by %s (%s), want %s", c.ID, d.Allow, d.Rule, d.Message, c.Want)
		} else if testing.Verbose() {
			t.Logf("%s: %s", c.ID, d.Rule)
		}
	}
	if n < 30 {
		t.Errorf("only %d own cases", n)
	}
}

func splitLines(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		i := 0
		for i < len(b) && b[i] != '\n' {
			i++
		}
		if i > 0 {
			out = append(out, b[:i])
		}
		if i == len(b) {
			break
		}
		b = b[i+1:]
	}
	return out
}
