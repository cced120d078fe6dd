package policy

import (
	"errors"
	"fmt"
	"path"
	"reflect"
	"slices"
	"strings"
	"sync"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
	"cel.dev/cel-go/ext"

	"github.com/dockplug/dockplug/authz/normalize"
)

// Policy is a compiled policy: immutable, safe for concurrent use.
type Policy struct {
	rules     []*rule // presets first, then the file's rules
	allowBind []string
	allowAll  bool // default: allow
	// Source names where the policy came from, for messages.
	Source string
}

type rule struct {
	RuleSpec
	allow    bool
	response bool
	prg      cel.Program
}

// variables are the names rules may use, with their CEL types.
var variables = []struct{ name, typ string }{
	{"request", "normalize.Request"}, {"user", "normalize.User"}, {"container", "normalize.Container"},
	{"exec", "normalize.Exec"}, {"volume", "normalize.Volume"}, {"service", "normalize.Service"},
	{"plugin", "normalize.Plugin"}, {"build", "normalize.Build"},
}

var (
	envOnce sync.Once
	env     *cel.Env
	envErr  error
)

// celEnv is built once: it only declares types and functions.
func celEnv() (*cel.Env, error) {
	envOnce.Do(func() {
		opts := []cel.EnvOption{
			ext.NativeTypes(ext.ParseStructTags(true),
				reflect.TypeOf(normalize.Request{}), reflect.TypeOf(normalize.User{}),
				reflect.TypeOf(normalize.Container{}), reflect.TypeOf(normalize.Exec{}),
				reflect.TypeOf(normalize.Volume{}), reflect.TypeOf(normalize.Service{}),
				reflect.TypeOf(normalize.Plugin{}), reflect.TypeOf(normalize.Privilege{}),
				reflect.TypeOf(normalize.Build{})),
			ext.Strings(),
			cel.Variable("allowBind", cel.ListType(cel.StringType)),
			// p.under(prefixes): p equals one of the prefixes or lies below
			// one, at a path component boundary, both cleaned.
			cel.Function("under", cel.MemberOverload("string_under_list_string",
				[]*cel.Type{cel.StringType, cel.ListType(cel.StringType)}, cel.BoolType,
				cel.BinaryBinding(underBinding))),
		}
		for _, v := range variables {
			opts = append(opts, cel.Variable(v.name, cel.ObjectType(v.typ)))
		}
		env, envErr = cel.NewEnv(opts...)
	})
	return env, envErr
}

func underBinding(lhs, rhs ref.Val) ref.Val {
	p, ok := lhs.Value().(string)
	if !ok {
		return types.MaybeNoSuchOverloadErr(lhs)
	}
	l, ok := rhs.(traits.Lister)
	if !ok {
		return types.MaybeNoSuchOverloadErr(rhs)
	}
	var prefixes []string
	it := l.Iterator()
	for it.HasNext() == types.True {
		s, ok := it.Next().Value().(string)
		if !ok {
			return types.MaybeNoSuchOverloadErr(rhs)
		}
		prefixes = append(prefixes, s)
	}
	return types.Bool(Under(p, prefixes))
}

// Under reports whether the host path p is one of prefixes or below one.
func Under(p string, prefixes []string) bool {
	p = path.Clean("/" + p)
	for _, pre := range prefixes {
		pre = path.Clean("/" + pre)
		if p == pre || pre == "/" || strings.HasPrefix(p, pre+"/") {
			return true
		}
	}
	return false
}

// Compile type-checks and compiles every rule of f, presets first. An
// error names the rule and its line.
func Compile(f *File, source string) (*Policy, error) {
	e, err := celEnv()
	if err != nil {
		return nil, fmt.Errorf("policy environment: %w", err)
	}
	p := &Policy{allowBind: slices.Clone(f.AllowBind), allowAll: f.Default == "allow", Source: source}
	if p.allowBind == nil {
		p.allowBind = []string{}
	}
	for _, a := range p.allowBind {
		if !path.IsAbs(a) {
			return nil, fmt.Errorf("%s: allow-bind: %q is not an absolute path", source, a)
		}
	}
	var errs []error
	for _, name := range f.Presets {
		rs, ok := presets[name]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: unknown preset %q (known: %s)", source, name, strings.Join(PresetNames(), ", ")))
			continue
		}
		for _, rs := range rs {
			rs.Name = name + "/" + rs.Name
			r, err := compileRule(e, rs)
			if err != nil {
				errs = append(errs, fmt.Errorf("preset %w", err))
				continue
			}
			p.rules = append(p.rules, r)
		}
	}
	seen := map[string]bool{}
	for i, rs := range f.Rules {
		if rs.Name == "" {
			rs.Name = fmt.Sprintf("rule-%d", i+1)
		}
		if seen[rs.Name] {
			errs = append(errs, fmt.Errorf("%s:%d: rule %q: duplicate name", source, rs.Line, rs.Name))
			continue
		}
		seen[rs.Name] = true
		r, err := compileRule(e, rs)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %w", source, rs.Line, err))
			continue
		}
		p.rules = append(p.rules, r)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

func compileRule(e *cel.Env, rs RuleSpec) (*rule, error) {
	r := &rule{RuleSpec: rs}
	expr := rs.Deny
	switch {
	case rs.Allow != "" && rs.Deny != "":
		return nil, fmt.Errorf("rule %q: has both allow and deny", rs.Name)
	case rs.Allow != "":
		r.allow, expr = true, rs.Allow
	case rs.Deny == "":
		return nil, fmt.Errorf("rule %q: needs allow or deny", rs.Name)
	}
	switch rs.On {
	case "", "request":
	case "response":
		r.response = true
	default:
		return nil, fmt.Errorf("rule %q: on: %q, want request or response", rs.Name, rs.On)
	}
	ast, iss := e.Compile(expr)
	if iss.Err() != nil {
		return nil, fmt.Errorf("rule %q: %w", rs.Name, iss.Err())
	}
	if ast.OutputType() != cel.BoolType {
		return nil, fmt.Errorf("rule %q: evaluates to %s, want bool", rs.Name, ast.OutputType())
	}
	prg, err := e.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, fmt.Errorf("rule %q: %w", rs.Name, err)
	}
	r.prg = prg
	return r, nil
}

// PresetNames lists the known presets.
func PresetNames() []string {
	var out []string
	for k := range presets {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
