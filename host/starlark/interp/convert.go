package main

// Starlark values <-> JSON. The plan is written by hand so that object keys
// keep the order of the Starlark dicts they came from (Starlark dicts are
// insertion-ordered; structs list their fields sorted by name).

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// OMap is a JSON object with ordered keys.
type OMap struct {
	keys []string
	vals []interface{}
}

// Set appends k, or replaces its value when k is already present.
func (m *OMap) Set(k string, v interface{}) {
	for i, key := range m.keys {
		if key == k {
			m.vals[i] = v
			return
		}
	}
	m.keys = append(m.keys, k)
	m.vals = append(m.vals, v)
}

// Get returns the value of k.
func (m *OMap) Get(k string) (interface{}, bool) {
	for i, key := range m.keys {
		if key == k {
			return m.vals[i], true
		}
	}
	return nil, false
}

// Len is the number of keys.
func (m *OMap) Len() int { return len(m.keys) }

// bigNum is an integer too large for int64, written as its digits.
type bigNum string

// rawJSON is already-encoded JSON text.
type rawJSON string

func marshalJSON(v interface{}) ([]byte, error) {
	var b bytes.Buffer
	if err := writeJSON(&b, v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func writeJSON(b *bytes.Buffer, v interface{}) error {
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		if x {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case int:
		b.WriteString(strconv.Itoa(x))
	case int64:
		b.WriteString(strconv.FormatInt(x, 10))
	case bigNum:
		b.WriteString(string(x))
	case rawJSON:
		b.WriteString(string(x))
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("cannot convert %v to JSON", x)
		}
		b.WriteString(formatFloat(x))
	case string:
		writeJSONString(b, x)
	case []interface{}:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeJSON(b, e); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case []string:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSONString(b, e)
		}
		b.WriteByte(']')
	case *OMap:
		b.WriteByte('{')
		for i, k := range x.keys {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSONString(b, k)
			b.WriteByte(':')
			if err := writeJSON(b, x.vals[i]); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	case map[string]interface{}:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		m := &OMap{keys: keys}
		for _, k := range keys {
			m.vals = append(m.vals, x[k])
		}
		return writeJSON(b, m)
	default:
		return fmt.Errorf("internal error: cannot write %T as JSON", v)
	}
	return nil
}

func formatFloat(f float64) string {
	if f == math.Trunc(f) && math.Abs(f) < 1e15 {
		return strconv.FormatFloat(f, 'f', 1, 64) // 100.0: stays a float
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

const hexDigits = "0123456789abcdef"

func writeJSONString(b *bytes.Buffer, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"':
				b.WriteString(`\"`)
			case c == '\\':
				b.WriteString(`\\`)
			case c == '\n':
				b.WriteString(`\n`)
			case c == '\r':
				b.WriteString(`\r`)
			case c == '\t':
				b.WriteString(`\t`)
			case c < 0x20 || c == 0x7f:
				b.WriteString(`\u00`)
				b.WriteByte(hexDigits[c>>4])
				b.WriteByte(hexDigits[c&0xf])
			default:
				b.WriteByte(c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteString(`\ufffd`) // invalid UTF-8
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	b.WriteByte('"')
}

// jsonable is a Kurtosis value with its own JSON form.
type jsonable interface{ toJSON() (interface{}, error) }

// toJSON converts a Starlark value: None -> null, dicts (string keys) ->
// objects in insertion order, structs -> objects, lists and tuples ->
// arrays, Kurtosis values -> their plan form.
func toJSON(v starlark.Value) (interface{}, error) {
	return toJSONDepth(v, 0)
}

func toJSONDepth(v starlark.Value, depth int) (interface{}, error) {
	if depth > 100 {
		return nil, fmt.Errorf("cannot convert to JSON: nested too deeply (a cycle?)")
	}
	switch x := v.(type) {
	case starlark.NoneType:
		return nil, nil
	case starlark.Bool:
		return bool(x), nil
	case starlark.Int:
		if i, ok := x.Int64(); ok {
			return i, nil
		}
		return bigNum(x.String()), nil
	case starlark.Float:
		f := float64(x)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("cannot convert float %s to JSON", x)
		}
		return f, nil
	case starlark.String:
		return string(x), nil
	case *starlark.List:
		return seqJSON(x, depth)
	case starlark.Tuple:
		return seqJSON(x, depth)
	case *starlark.Dict:
		m := &OMap{}
		for _, kv := range x.Items() {
			k, ok := kv[0].(starlark.String)
			if !ok {
				return nil, fmt.Errorf("cannot convert dict with %s key %s to JSON: keys must be strings", typeName(kv[0]), kv[0])
			}
			j, err := toJSONDepth(kv[1], depth+1)
			if err != nil {
				return nil, err
			}
			m.keys = append(m.keys, string(k))
			m.vals = append(m.vals, j)
		}
		return m, nil
	case *starlarkstruct.Struct:
		m := &OMap{}
		for _, name := range x.AttrNames() {
			fv, err := x.Attr(name)
			if err != nil {
				return nil, err
			}
			j, err := toJSONDepth(fv, depth+1)
			if err != nil {
				return nil, err
			}
			m.keys = append(m.keys, name)
			m.vals = append(m.vals, j)
		}
		return m, nil
	case jsonable:
		return x.toJSON()
	}
	return nil, fmt.Errorf("cannot convert %s to JSON", typeName(v))
}

func seqJSON(seq starlark.Indexable, depth int) (interface{}, error) {
	out := make([]interface{}, 0, seq.Len())
	for i := 0; i < seq.Len(); i++ {
		j, err := toJSONDepth(seq.Index(i), depth+1)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, nil
}

// jsonText encodes a value as compact JSON text.
func jsonText(v starlark.Value) (string, error) {
	j, err := toJSON(v)
	if err != nil {
		return "", err
	}
	b, err := marshalJSON(j)
	return string(b), err
}

func jsonValid(s string) bool { return json.Valid([]byte(s)) }

// fromJSON decodes JSON text to Starlark, objects to dicts in document
// order. An object holding "_kurtosis_parser": "struct" becomes a struct,
// as in Kurtosis.
func fromJSON(data []byte) (starlark.Value, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := decodeValue(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err == nil {
		return nil, fmt.Errorf("unexpected data after the JSON value")
	}
	return v, nil
}

func decodeValue(dec *json.Decoder) (starlark.Value, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			d := starlark.NewDict(0)
			isStruct := false
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k := kt.(string)
				v, err := decodeValue(dec)
				if err != nil {
					return nil, err
				}
				if k == "_kurtosis_parser" && v == starlark.String("struct") {
					isStruct = true
					continue
				}
				if err := d.SetKey(starlark.String(k), v); err != nil {
					return nil, err
				}
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			if isStruct {
				kwargs := make([]starlark.Tuple, 0, d.Len())
				for _, kv := range d.Items() {
					kwargs = append(kwargs, kv)
				}
				return starlarkstruct.FromKeywords(starlarkstruct.Default, kwargs), nil
			}
			return d, nil
		case '[':
			var elems []starlark.Value
			for dec.More() {
				v, err := decodeValue(dec)
				if err != nil {
					return nil, err
				}
				elems = append(elems, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return starlark.NewList(elems), nil
		}
	case string:
		return starlark.String(t), nil
	case bool:
		return starlark.Bool(t), nil
	case nil:
		return starlark.None, nil
	case json.Number:
		s := string(t)
		if !strings.ContainsAny(s, ".eE") {
			if i, err := strconv.ParseInt(s, 10, 64); err == nil {
				return starlark.MakeInt64(i), nil
			}
			if bi, ok := new(big.Int).SetString(s, 10); ok {
				return starlark.MakeBigInt(bi), nil
			}
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, err
		}
		return starlark.Float(f), nil
	}
	return nil, fmt.Errorf("unexpected JSON token %v", tok)
}

// toGo converts template data: dict and struct -> map[string]interface{},
// list and tuple -> []interface{}, int -> int64, float, bool, string.
func toGo(v starlark.Value) (interface{}, error) {
	j, err := toJSON(v)
	if err != nil {
		return nil, err
	}
	return jsonToGo(j), nil
}

func jsonToGo(j interface{}) interface{} {
	switch x := j.(type) {
	case *OMap:
		m := make(map[string]interface{}, len(x.keys))
		for i, k := range x.keys {
			m[k] = jsonToGo(x.vals[i])
		}
		return m
	case []interface{}:
		out := make([]interface{}, len(x))
		for i, e := range x {
			out[i] = jsonToGo(e)
		}
		return out
	case bigNum:
		bi, _ := new(big.Int).SetString(string(x), 10)
		return bi
	}
	return j
}

// plainJSONToGo converts encoding/json output (with UseNumber) for the
// render command: integers -> int64, other numbers -> float64.
func plainJSONToGo(v interface{}) interface{} {
	switch x := v.(type) {
	case map[string]interface{}:
		for k, e := range x {
			x[k] = plainJSONToGo(e)
		}
		return x
	case []interface{}:
		for i, e := range x {
			x[i] = plainJSONToGo(e)
		}
		return x
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	}
	return v
}
