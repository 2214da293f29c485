package admin

import (
	"encoding/json"
	"net/url"
	"testing"
)

// FuzzListQuery: any query string is answered (400 or a list), never a
// panic, and a page never holds more than page_size items.
func FuzzListQuery(f *testing.F) {
	for _, s := range []string{"page=1", "page=2&page_size=5", "name=q&use_regex=true", "sort=message_stats.publish&sort_reverse=true",
		"page=1&name=%5E%28a&use_regex=true", "sort=..", "page=9999999999999999999"} {
		f.Add(s)
	}
	items := []any{
		map[string]any{"name": "a", "n": json.Number("2"), "m": map[string]any{"x": "z"}},
		map[string]any{"name": "B", "n": json.Number("1"), "m": true},
		map[string]any{"name": json.Number("3")},
		"not an object",
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := parseListQuery(v)
		if err != nil {
			return
		}
		out, paged, err := q.apply(append([]any{}, items...), "name")
		if err != nil {
			return
		}
		if q.page > 0 && (len(paged.Items) > q.pageSize || paged.ItemCount != len(out)) {
			t.Fatalf("page of %d items, size %d", len(paged.Items), q.pageSize)
		}
	})
}
