package main

// Argument binding shared by the Kurtosis types and the plan methods:
// positional or keyword arguments in the declared order, required
// arguments, defaults, and type checks whose errors name the function, the
// parameter and the types ("PortSpec: for parameter number: got string,
// want int").

import (
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// A conv checks (and may normalise) one argument value. Its error is the
// part after "for parameter P: ".
type conv func(v starlark.Value) (starlark.Value, error)

type param struct {
	name     string
	required bool
	conv     conv
	def      starlark.Value // value when not given; nil means None
	keepNone bool           // None is a real value (a disabled duration), not "unset"
}

type signature struct {
	fn      string
	params  []param
	index   map[string]int
	aliases map[string]string // older keyword names Kurtosis accepted -> the parameter
}

// withAlias lets keyword `old` (a name an earlier Kurtosis release used)
// stand for parameter `name`.
func (s *signature) withAlias(old, name string) *signature {
	if s.aliases == nil {
		s.aliases = map[string]string{}
	}
	s.aliases[old] = name
	return s
}

func newSignature(fn string, params ...param) *signature {
	s := &signature{fn: fn, params: params, index: make(map[string]int, len(params))}
	for i, p := range params {
		if p.def == nil {
			s.params[i].def = starlark.None
		}
		s.index[p.name] = i
	}
	return s
}

// withDescription returns a copy of s with the optional, non-empty
// `description` appended (every plan instruction takes it last).
func (s *signature) withDescription() *signature {
	ps := append(append([]param(nil), s.params...), param{name: "description", conv: cNonEmptyString})
	d := newSignature(s.fn, ps...)
	d.aliases = s.aliases
	return d
}

type bound struct {
	sig   *signature
	vals  []starlark.Value
	given []bool
}

func (s *signature) bind(args starlark.Tuple, kwargs []starlark.Tuple) (*bound, error) {
	n := len(s.params)
	b := &bound{sig: s, vals: make([]starlark.Value, n), given: make([]bool, n)}
	if len(args) > n {
		return nil, fmt.Errorf("%s: got %d arguments, want at most %d", s.fn, len(args), n)
	}
	raw := make([]starlark.Value, n)
	for i, a := range args {
		raw[i] = a
	}
	for _, kv := range kwargs {
		name := string(kv[0].(starlark.String))
		i, ok := s.index[name]
		if !ok {
			if to, aliased := s.aliases[name]; aliased {
				i, ok = s.index[to]
			}
		}
		if !ok {
			return nil, fmt.Errorf("%s: unexpected keyword argument %q%s", s.fn, name, s.suggest(name))
		}
		if raw[i] != nil {
			return nil, fmt.Errorf("%s: got multiple values for parameter %s", s.fn, name)
		}
		raw[i] = kv[1]
	}
	for i, p := range s.params {
		v := raw[i]
		if v == starlark.None && !p.keepNone && !p.required {
			v = nil // an optional argument passed as None is unset
		}
		if v == nil {
			if p.required {
				return nil, fmt.Errorf("%s: missing argument for %s", s.fn, p.name)
			}
			b.vals[i] = p.def
			continue
		}
		if p.conv != nil {
			c, err := p.conv(v)
			if err != nil {
				return nil, fmt.Errorf("%s: for parameter %s: %v", s.fn, p.name, err)
			}
			v = c
		}
		b.vals[i] = v
		b.given[i] = true
	}
	return b, nil
}

// suggest names the closest parameter for a misspelt keyword.
func (s *signature) suggest(name string) string {
	best, bestD := "", 3
	for _, p := range s.params {
		if d := editDistance(name, p.name); d < bestD {
			best, bestD = p.name, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			if prev[j]+1 < c {
				c = prev[j] + 1
			}
			if cur[j-1]+1 < c {
				c = cur[j-1] + 1
			}
			cur[j] = c
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func (b *bound) get(name string) starlark.Value { return b.vals[b.sig.index[name]] }
func (b *bound) isSet(name string) bool         { return b.given[b.sig.index[name]] }

func (b *bound) str(name string) string {
	s, _ := starlark.AsString(b.get(name))
	return s
}

func (b *bound) int(name string) int64 {
	if n, ok := b.get(name).(starlark.Int); ok {
		i, _ := n.Int64()
		return i
	}
	return 0
}

func (b *bound) float(name string) float64 {
	switch v := b.get(name).(type) {
	case starlark.Float:
		return float64(v)
	case starlark.Int:
		f, _ := starlark.AsFloat(v)
		return f
	}
	return 0
}

func (b *bound) bool(name string) bool { return bool(b.get(name).Truth()) }

// call renders the given arguments (all but description) as a call in the
// canonical order: `add_service(name="db", config=ServiceConfig(...))`.
func (b *bound) call(fn string, onlyNonDefault bool) string {
	var sb strings.Builder
	sb.WriteString(fn)
	sb.WriteByte('(')
	first := true
	for i, p := range b.sig.params {
		if !b.given[i] || p.name == "description" {
			continue
		}
		if onlyNonDefault && valuesEqual(b.vals[i], p.def) {
			continue
		}
		if !first {
			sb.WriteString(", ")
		}
		first = false
		sb.WriteString(p.name)
		sb.WriteByte('=')
		sb.WriteString(b.vals[i].String())
	}
	sb.WriteByte(')')
	return sb.String()
}

func valuesEqual(a, b starlark.Value) bool {
	if a == b {
		return true
	}
	if a.Type() != b.Type() {
		return false
	}
	eq, err := starlark.Equal(a, b)
	return err == nil && eq
}

// ---- converters ----

func typeName(v starlark.Value) string {
	if v == starlark.None {
		return "NoneType"
	}
	return v.Type()
}

func errWant(v starlark.Value, want string) error {
	return fmt.Errorf("got %s, want %s", typeName(v), want)
}

func cAny(v starlark.Value) (starlark.Value, error) { return v, nil }

func cString(v starlark.Value) (starlark.Value, error) {
	if _, ok := v.(starlark.String); !ok {
		return nil, errWant(v, "string")
	}
	return v, nil
}

func cNonEmptyString(v starlark.Value) (starlark.Value, error) {
	if _, err := cString(v); err != nil {
		return nil, err
	}
	if v.(starlark.String) == "" {
		return nil, fmt.Errorf("must not be empty")
	}
	return v, nil
}

func cBool(v starlark.Value) (starlark.Value, error) {
	if _, ok := v.(starlark.Bool); !ok {
		return nil, errWant(v, "bool")
	}
	return v, nil
}

func cInt(v starlark.Value) (starlark.Value, error) {
	i, ok := v.(starlark.Int)
	if !ok {
		return nil, errWant(v, "int")
	}
	if _, ok := i.Int64(); !ok {
		return nil, fmt.Errorf("%s is out of range", i)
	}
	return v, nil
}

func cIntRange(lo, hi int64) conv {
	return func(v starlark.Value) (starlark.Value, error) {
		if _, err := cInt(v); err != nil {
			return nil, err
		}
		i, _ := v.(starlark.Int).Int64()
		if i < lo || i > hi {
			if hi == math.MaxInt64 {
				return nil, fmt.Errorf("%d is out of range: must be at least %d", i, lo)
			}
			return nil, fmt.Errorf("%d is out of range %d..%d", i, lo, hi)
		}
		return v, nil
	}
}

var cNonNegInt = cIntRange(0, math.MaxInt64)

// cFloatRange accepts a float or an int (returned as a float).
func cFloatRange(lo, hi float64) conv {
	return func(v starlark.Value) (starlark.Value, error) {
		var f float64
		switch x := v.(type) {
		case starlark.Float:
			f = float64(x)
		case starlark.Int:
			f, _ = starlark.AsFloat(x)
		default:
			return nil, errWant(v, "float")
		}
		if math.IsNaN(f) || f < lo || f > hi {
			return nil, fmt.Errorf("%v is out of range %v..%v", f, lo, hi)
		}
		return starlark.Float(f), nil
	}
}

// cDuration accepts a Go duration string, or None (disabled).
func cDuration(v starlark.Value) (starlark.Value, error) {
	if v == starlark.None {
		return v, nil
	}
	s, ok := v.(starlark.String)
	if !ok {
		return nil, errWant(v, "duration string or None")
	}
	if _, err := time.ParseDuration(string(s)); err != nil {
		return nil, fmt.Errorf("%q is not a duration (like \"1s\" or \"2m30s\"): %v", string(s), err)
	}
	return v, nil
}

func cPercentage(v starlark.Value) (starlark.Value, error) {
	return cFloatRange(0, 100)(v)
}

func sequence(v starlark.Value) (starlark.Indexable, bool) {
	switch x := v.(type) {
	case *starlark.List:
		return x, true
	case starlark.Tuple:
		return x, true
	}
	return nil, false
}

// cListOf checks every element of a list or tuple.
func cListOf(want string, elem conv) conv {
	return func(v starlark.Value) (starlark.Value, error) {
		seq, ok := sequence(v)
		if !ok {
			return nil, errWant(v, "list of "+want)
		}
		for i := 0; i < seq.Len(); i++ {
			if _, err := elem(seq.Index(i)); err != nil {
				return nil, fmt.Errorf("element %d: %v", i, err)
			}
		}
		return v, nil
	}
}

var cStringList = cListOf("string", cString)
var cIntList = cListOf("int", cInt)

// cDictOf checks string keys (with an optional key check) and the values.
func cDictOf(want string, key func(string) error, val conv) conv {
	return func(v starlark.Value) (starlark.Value, error) {
		d, ok := v.(*starlark.Dict)
		if !ok {
			return nil, errWant(v, "dict of "+want)
		}
		for _, kv := range d.Items() {
			k, ok := kv[0].(starlark.String)
			if !ok {
				return nil, fmt.Errorf("key %s: got %s, want string", kv[0], typeName(kv[0]))
			}
			if key != nil {
				if err := key(string(k)); err != nil {
					return nil, fmt.Errorf("key %q: %v", string(k), err)
				}
			}
			if _, err := val(kv[1]); err != nil {
				return nil, fmt.Errorf("value of key %q: %v", string(k), err)
			}
		}
		return v, nil
	}
}

var cStringDict = cDictOf("string to string", nil, cString)

func cDict(v starlark.Value) (starlark.Value, error) {
	if _, ok := v.(*starlark.Dict); !ok {
		return nil, errWant(v, "dict")
	}
	return v, nil
}

// cType accepts values of the named Kurtosis types.
func cType(names ...string) conv {
	return func(v starlark.Value) (starlark.Value, error) {
		if o, ok := v.(*kobj); ok {
			for _, n := range names {
				if o.t.name == n {
					return v, nil
				}
			}
		}
		return nil, errWant(v, strings.Join(names, " or "))
	}
}

func cOr(want string, convs ...conv) conv {
	return func(v starlark.Value) (starlark.Value, error) {
		for _, c := range convs {
			if r, err := c(v); err == nil {
				return r, nil
			}
		}
		return nil, errWant(v, want)
	}
}

// cJSONText accepts a dict or struct (encoded to JSON text) or a string
// holding JSON text.
func cJSONText(v starlark.Value) (starlark.Value, error) {
	switch x := v.(type) {
	case starlark.String:
		if !jsonValid(string(x)) {
			return nil, fmt.Errorf("%q is not JSON text", string(x))
		}
		return v, nil
	case *starlark.Dict, *starlarkstruct.Struct:
		if _, err := toJSON(v); err != nil {
			return nil, err
		}
		return v, nil
	}
	return nil, errWant(v, "dict, struct or string")
}

var assertions = []string{"==", "!=", ">=", ">", "<=", "<", "IN", "NOT_IN"}

func cAssertion(v starlark.Value) (starlark.Value, error) {
	s, ok := v.(starlark.String)
	if !ok {
		return nil, errWant(v, "string")
	}
	for _, a := range assertions {
		if string(s) == a {
			return v, nil
		}
	}
	return nil, fmt.Errorf("%q is not an assertion: want one of %s", string(s), strings.Join(quoteAll(assertions), ", "))
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

// checkTarget: IN and NOT_IN need an iterable target.
func checkTarget(fn, assertion string, target starlark.Value) error {
	if assertion != "IN" && assertion != "NOT_IN" {
		return nil
	}
	switch target.(type) {
	case *starlark.List, starlark.Tuple, *starlark.Dict:
		return nil
	}
	return fmt.Errorf("%s: assertion %s needs a list, tuple or dict as target_value, got %s", fn, assertion, typeName(target))
}

var rfc1035 = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`)

func checkServiceName(name string) error {
	if !rfc1035.MatchString(name) {
		return fmt.Errorf("%q is not a valid service name: lowercase letters, digits and '-', starting with a letter, not ending with '-', at most 63 characters (RFC 1035)", name)
	}
	return nil
}

func cServiceName(v starlark.Value) (starlark.Value, error) {
	if _, err := cString(v); err != nil {
		return nil, err
	}
	if err := checkServiceName(string(v.(starlark.String))); err != nil {
		return nil, err
	}
	return v, nil
}
