package admin

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Pagination, sorting and filtering of list endpoints, as RabbitMQ's
// management API does them: ?page=&page_size=&name=&use_regex=&sort=
// &sort_reverse=. Every list handler builds its JSON-able slice and hands
// it to writeList, so the rules live in one place.

// Paging limits, as RabbitMQ's.
const (
	defaultPageSize = 100
	maxPageSize     = 500
)

// listQuery is the parsed paging, sorting and filtering of a request.
type listQuery struct {
	page        int // 0: not paged (the plain array is answered)
	pageSize    int
	name        string
	nameRE      *regexp.Regexp // set when use_regex=true
	sort        []string       // the dotted field path, split
	sortReverse bool
}

// active reports whether the query asks for anything beyond the plain list.
func (q *listQuery) active() bool {
	return q.page > 0 || q.name != "" || len(q.sort) > 0 || q.sortReverse
}

// parseListQuery reads the query parameters; a bad one is an error to
// answer with 400, as RabbitMQ does.
func parseListQuery(v url.Values) (listQuery, error) {
	q := listQuery{pageSize: defaultPageSize, name: v.Get("name")}
	if s := v.Get("page"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return q, fmt.Errorf("page must be a positive integer, got %q", s)
		}
		q.page = n
	}
	if s := v.Get("page_size"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return q, fmt.Errorf("page_size must be a positive integer, got %q", s)
		}
		if n > maxPageSize {
			return q, fmt.Errorf("page_size %d exceeds the maximum of %d", n, maxPageSize)
		}
		q.pageSize = n
	}
	if q.name != "" && v.Get("use_regex") == "true" {
		// Case-insensitive, as RabbitMQ compiles the filter "caseless".
		re, err := regexp.Compile("(?i)" + q.name)
		if err != nil {
			return q, fmt.Errorf("invalid name regex: %v", err)
		}
		q.nameRE = re
	}
	if s := v.Get("sort"); s != "" {
		q.sort = strings.Split(s, ".")
	}
	q.sortReverse = v.Get("sort_reverse") == "true"
	return q, nil
}

// matches applies the name filter to one item's name field: a
// case-insensitive substring, or the regex.
func (q *listQuery) matches(name string) bool {
	if q.nameRE != nil {
		return q.nameRE.MatchString(name)
	}
	return strings.Contains(strings.ToLower(name), strings.ToLower(q.name))
}

// PagedJSON is RabbitMQ's answer to a request with ?page=.
type PagedJSON struct {
	FilteredCount int   `json:"filtered_count"`
	ItemCount     int   `json:"item_count"`
	Items         []any `json:"items"`
	Page          int   `json:"page"`
	PageCount     int   `json:"page_count"`
	PageSize      int   `json:"page_size"`
	TotalCount    int   `json:"total_count"`
}

// writeList answers a list endpoint: items (a slice of JSON-able values)
// as a plain array, or filtered, sorted and paged when the query asks.
// nameField is the field the name filter applies to ("name" for most
// objects; bindings and permissions have none of that name).
func writeList[T any](w http.ResponseWriter, r *http.Request, items []T, nameField string) {
	q, err := parseListQuery(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if items == nil {
		items = []T{}
	}
	if !q.active() {
		writeJSON(w, http.StatusOK, items)
		return
	}
	// Generic maps let one code path sort on any (nested) field; the
	// round trip only happens when the client asked for it.
	generic, err := toGeneric(items)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal_error", err.Error())
		return
	}
	out, paged, err := q.apply(generic, nameField)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if q.page == 0 {
		writeJSON(w, http.StatusOK, out)
		return
	}
	writeJSON(w, http.StatusOK, paged)
}

func toGeneric[T any](items []T) ([]any, error) {
	data, err := json.Marshal(items)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // keep large integers exact
	var out []any
	if err := dec.Decode(&out); err != nil {
		return nil, err
	}
	return out, nil
}

// apply filters, sorts and pages items (decoded JSON values). It returns
// the resulting list and, when paged, RabbitMQ's paged object.
func (q *listQuery) apply(items []any, nameField string) ([]any, PagedJSON, error) {
	total := len(items)
	if q.name != "" {
		kept := items[:0:0]
		for _, it := range items {
			if s, ok := field(it, []string{nameField}).(string); ok && q.matches(s) {
				kept = append(kept, it)
			}
		}
		items = kept
	}
	if len(q.sort) > 0 {
		slices.SortStableFunc(items, func(a, b any) int {
			return compareJSON(field(a, q.sort), field(b, q.sort))
		})
	}
	if q.sortReverse {
		slices.Reverse(items)
	}
	if q.page == 0 {
		return items, PagedJSON{}, nil
	}
	filtered := len(items)
	pageCount := (filtered + q.pageSize - 1) / q.pageSize
	if q.page > max(pageCount, 1) {
		return nil, PagedJSON{}, fmt.Errorf("page %d out of range (page_count %d)", q.page, pageCount)
	}
	start := min((q.page-1)*q.pageSize, filtered)
	end := min(start+q.pageSize, filtered)
	page := append([]any{}, items[start:end]...)
	return page, PagedJSON{FilteredCount: filtered, ItemCount: len(page), Items: page, Page: q.page,
		PageCount: pageCount, PageSize: q.pageSize, TotalCount: total}, nil
}

// field follows a dotted path through decoded JSON objects; nil when absent.
func field(v any, path []string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

// compareJSON orders decoded JSON values: absent (nil) first, then
// booleans, numbers, strings; values of one kind by their natural order.
func compareJSON(a, b any) int {
	ra, rb := rank(a), rank(b)
	if ra != rb {
		return cmp.Compare(ra, rb)
	}
	switch x := a.(type) {
	case bool:
		y := b.(bool)
		switch {
		case x == y:
			return 0
		case !x:
			return -1
		}
		return 1
	case json.Number:
		fx, _ := x.Float64()
		fy, _ := b.(json.Number).Float64()
		return cmp.Compare(fx, fy)
	case string:
		return strings.Compare(x, b.(string))
	}
	return 0
}

func rank(v any) int {
	switch v.(type) {
	case nil:
		return 0
	case bool:
		return 1
	case json.Number:
		return 2
	case string:
		return 3
	}
	return 4 // objects and arrays: equal among themselves
}
