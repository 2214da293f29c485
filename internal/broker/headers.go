package broker

import "bytes"

// headersMatch implements the headers exchange: binding arguments are
// matched against message headers under the binding's x-match mode, as
// RabbitMQ does ("all" by default; "any"; and "all-with-x"/"any-with-x",
// which also compare arguments whose names start with "x-").
func headersMatch(args, headers Table) bool {
	mode, _ := args["x-match"].(string)
	withX := mode == "all-with-x" || mode == "any-with-x"
	any := mode == "any" || mode == "any-with-x"
	matched, considered := 0, 0
	for k, want := range args {
		if k == "x-match" || (!withX && len(k) >= 2 && k[:2] == "x-") {
			continue
		}
		considered++
		got, ok := headers[k]
		hit := ok && (want == nil || valuesEqual(want, got))
		if hit {
			matched++
			if any {
				return true
			}
		} else if !any {
			return false
		}
	}
	if any {
		return false
	}
	return matched == considered
}

// valuesEqual compares header values the way RabbitMQ's Erlang `==` does:
// numbers by value whatever their width, strings and byte arrays by bytes.
func valuesEqual(a, b any) bool {
	if ai, ok := asInt(a); ok {
		if bi, ok := asInt(b); ok {
			return ai == bi
		}
		if bf, ok := asFloat(b); ok {
			return float64(ai) == bf
		}
		return false
	}
	if af, ok := asFloat(a); ok {
		if bf, ok := asFloat(b); ok {
			return af == bf
		}
		if bi, ok := asInt(b); ok {
			return af == float64(bi)
		}
		return false
	}
	switch av := a.(type) {
	case string:
		switch bv := b.(type) {
		case string:
			return av == bv
		case []byte:
			return av == string(bv)
		}
	case []byte:
		switch bv := b.(type) {
		case string:
			return string(av) == bv
		case []byte:
			return bytes.Equal(av, bv)
		}
	case bool:
		bv, ok := b.(bool)
		return ok && av == bv
	case nil:
		return b == nil
	}
	return false
}

func asInt(v any) (int64, bool) {
	switch n := v.(type) {
	case int:
		return int64(n), true
	case int8:
		return int64(n), true
	case int16:
		return int64(n), true
	case int32:
		return int64(n), true
	case int64:
		return n, true
	case uint8:
		return int64(n), true
	case uint16:
		return int64(n), true
	case uint32:
		return int64(n), true
	case uint64:
		return int64(n), true
	}
	return 0, false
}

func asFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case float32:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}
