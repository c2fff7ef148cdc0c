// Command healthcheck evaluates the chart's Argo CD health check (charts/account-linker/health)
// with gopher-lua, the Lua 5.1 interpreter Argo CD embeds, and computes kstatus (the library
// behind `kubectl wait`-style tooling, Flux and cli-utils appliers) for the same status fixtures.
// It fails when either disagrees with the expectations in the fixtures folder's expected.yaml.
//
//	healthcheck -lua health.lua -fixtures testdata
//	healthcheck -lua health.lua -object some.yaml   # print both verdicts for one object
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

// expectation is one fixture's expected verdicts.
type expectation struct {
	ArgoCD string `json:"argocd"`
	// Substring of the Argo CD message (empty: not checked).
	Message string `json:"message,omitempty"`
	KStatus string `json:"kstatus"`
}

type verdict struct {
	argoStatus, argoMessage, kstatus string
}

func main() {
	luaPath := flag.String("lua", "", "Lua health script")
	fixtures := flag.String("fixtures", "", "folder of <kind>/<situation>.yaml fixtures with expected.yaml")
	object := flag.String("object", "", "evaluate a single object file and print the verdicts")
	flag.Parse()
	if *luaPath == "" || (*fixtures == "") == (*object == "") {
		flag.Usage()
		os.Exit(2)
	}
	script, err := os.ReadFile(*luaPath)
	check(err)
	if *object != "" {
		v, err := evaluate(string(script), *object)
		check(err)
		fmt.Printf("argocd=%s message=%q kstatus=%s\n", v.argoStatus, v.argoMessage, v.kstatus)
		return
	}
	raw, err := os.ReadFile(filepath.Join(*fixtures, "expected.yaml"))
	check(err)
	expected := map[string]expectation{}
	check(yaml.UnmarshalStrict(raw, &expected))
	files, err := filepath.Glob(filepath.Join(*fixtures, "*", "*.yaml"))
	check(err)
	sort.Strings(files)
	seen := map[string]bool{}
	failures := 0
	for _, file := range files {
		key := strings.TrimSuffix(filepath.ToSlash(strings.TrimPrefix(file, *fixtures+string(filepath.Separator))), ".yaml")
		want, ok := expected[key]
		if !ok {
			fmt.Printf("FAIL %s: no entry in expected.yaml\n", key)
			failures++
			continue
		}
		seen[key] = true
		got, err := evaluate(string(script), file)
		if err != nil {
			fmt.Printf("FAIL %s: %v\n", key, err)
			failures++
			continue
		}
		ok = got.argoStatus == want.ArgoCD && got.kstatus == want.KStatus &&
			strings.Contains(got.argoMessage, want.Message)
		mark := "ok  "
		if !ok {
			mark = "FAIL"
			failures++
		}
		fmt.Printf("%s %-40s argocd=%-11s kstatus=%-10s (want %s/%s) %q\n", mark, key, got.argoStatus,
			got.kstatus, want.ArgoCD, want.KStatus, got.argoMessage)
	}
	for key := range expected {
		if !seen[key] {
			fmt.Printf("FAIL %s: expected.yaml names a fixture that does not exist\n", key)
			failures++
		}
	}
	if failures > 0 || len(files) == 0 {
		fmt.Printf("%d failure(s) in %d fixture(s)\n", failures, len(files))
		os.Exit(1)
	}
}

func evaluate(script, file string) (verdict, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return verdict{}, err
	}
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return verdict{}, err
	}
	// Unstructured decoding keeps integers as int64, as the API machinery does for live objects.
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(js); err != nil {
		return verdict{}, err
	}
	res, err := status.Compute(u)
	if err != nil {
		return verdict{}, fmt.Errorf("kstatus: %w", err)
	}
	st, msg, err := argoHealth(script, u.Object)
	if err != nil {
		return verdict{}, err
	}
	return verdict{argoStatus: st, argoMessage: msg, kstatus: res.Status.String()}, nil
}

// argoHealth runs the script as Argo CD does: the object is the global `obj`, the script returns
// a table with `status` and `message`.
func argoHealth(script string, obj map[string]any) (string, string, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: false})
	defer l.Close()
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(script); err != nil {
		return "", "", fmt.Errorf("lua: %w", err)
	}
	ret, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return "", "", fmt.Errorf("lua: the script returned %s, not a table", l.Get(-1).Type())
	}
	return lua.LVAsString(ret.RawGetString("status")), lua.LVAsString(ret.RawGetString("message")), nil
}

func toLua(l *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case map[string]any:
		t := l.NewTable()
		for k, e := range v {
			t.RawSetString(k, toLua(l, e))
		}
		return t
	case []any:
		t := l.NewTable()
		for _, e := range v {
			t.Append(toLua(l, e))
		}
		return t
	case string:
		return lua.LString(v)
	case bool:
		return lua.LBool(v)
	case int64:
		return lua.LNumber(v)
	case float64:
		return lua.LNumber(v)
	case nil:
		return lua.LNil
	default:
		panic(fmt.Sprintf("unexpected %T", v))
	}
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck:", err)
		os.Exit(1)
	}
}
