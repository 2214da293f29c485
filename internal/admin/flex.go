package admin

import (
	"encoding/json"
	"reflect"
	"strings"
)

// flexBool accepts a JSON boolean or the strings "true" and "false":
// rabbitmqadmin sends every name=value argument as a string
// ("durable": "false"), and RabbitMQ's management API parses durable,
// auto_delete and internal with parse_bool, which takes both. Anything
// else is refused with an error that encoding/json completes with the
// field's name.
type flexBool bool

func (f *flexBool) UnmarshalJSON(b []byte) error {
	switch strings.ToLower(string(b)) {
	case "true", `"true"`:
		*f = true
	case "false", `"false"`:
		*f = false
	case "null":
	default:
		return &json.UnmarshalTypeError{Value: string(b), Type: reflect.TypeFor[bool]()}
	}
	return nil
}

// boolOr returns *p, or def when the field was absent.
func boolOr(p *flexBool, def bool) bool {
	if p == nil {
		return def
	}
	return bool(*p)
}
