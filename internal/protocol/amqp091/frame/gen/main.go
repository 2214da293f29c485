// Command gen generates methods_gen.go for package frame from the AMQP 0-9-1
// specification XML.
//
// Usage (see the go:generate line in frame.go):
//
//	go run ./gen -spec spec/amqp0-9-1.xml -out methods_gen.go
//
// It emits:
//   - the reply-code constants (reply-success and every constant with
//     class soft-error or hard-error), plus IsHardError;
//   - one ClassXxx constant per class;
//   - one struct per method with ClassID, MethodID, Name, HasContent,
//     Synchronous, decode and encode;
//   - newMethod, the (class id, method id) -> *struct factory;
//   - the Properties struct of the basic class with its flags, encode
//     and decode helpers.
//
// The generated code relies on the primitive readers and writers of
// package frame (decoder.short, encoder.shortstr, ...).
package main

import (
	"bytes"
	"encoding/xml"
	"flag"
	"fmt"
	"go/format"
	"os"
	"strings"
)

func main() {
	specPath := flag.String("spec", "spec/amqp0-9-1.xml", "path to the AMQP 0-9-1 spec XML")
	outPath := flag.String("out", "methods_gen.go", "output Go file")
	flag.Parse()

	spec, err := os.ReadFile(*specPath)
	if err != nil {
		fatal(err)
	}
	src, err := Generate(spec)
	if err != nil {
		fatal(err)
	}
	if err := os.WriteFile(*outPath, src, 0o644); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "gen:", err)
	os.Exit(1)
}

// XML model (only what the generator needs).

type xmlSpec struct {
	Constants []xmlConstant `xml:"constant"`
	Domains   []xmlDomain   `xml:"domain"`
	Classes   []xmlClass    `xml:"class"`
}

type xmlConstant struct {
	Name  string `xml:"name,attr"`
	Value int    `xml:"value,attr"`
	Class string `xml:"class,attr"`
}

type xmlDomain struct {
	Name string `xml:"name,attr"`
	Type string `xml:"type,attr"`
}

type xmlClass struct {
	Name    string      `xml:"name,attr"`
	Index   int         `xml:"index,attr"`
	Fields  []xmlField  `xml:"field"` // content properties
	Methods []xmlMethod `xml:"method"`
}

type xmlMethod struct {
	Name        string     `xml:"name,attr"`
	Index       int        `xml:"index,attr"`
	Synchronous string     `xml:"synchronous,attr"`
	Content     string     `xml:"content,attr"`
	Deprecated  string     `xml:"deprecated,attr"`
	Fields      []xmlField `xml:"field"`
}

type xmlField struct {
	Name     string `xml:"name,attr"`
	Domain   string `xml:"domain,attr"`
	Type     string `xml:"type,attr"`
	Reserved string `xml:"reserved,attr"`
}

// Resolved model.

type field struct {
	specName string
	goName   string
	amqpType string // bit, octet, short, long, longlong, shortstr, longstr, timestamp, table
	domain   string
}

// primitive describes how an AMQP primitive type maps to Go.
type primitive struct {
	goType string
	method string // decoder/encoder method name
	zero   string // expression template testing "is non-zero" (%s = value)
}

var primitives = map[string]primitive{
	"bit":       {goType: "bool"},
	"octet":     {"uint8", "octet", "%s != 0"},
	"short":     {"uint16", "short", "%s != 0"},
	"long":      {"uint32", "long", "%s != 0"},
	"longlong":  {"uint64", "longlong", "%s != 0"},
	"shortstr":  {"string", "shortstr", `%s != ""`},
	"longstr":   {"string", "longstr", `%s != ""`},
	"timestamp": {"time.Time", "timestamp", "!%s.IsZero()"},
	"table":     {"Table", "table", "%s != nil"},
}

// fieldOverrides renames method fields whose mechanical Go name is
// unusable or inconsistent:
//   - class-id / method-id of connection.close and channel.close would
//     collide with the ClassID() / MethodID() methods of the Method
//     interface, so they are named after the spec's labels
//     ("failing method class", "failing method ID");
//   - confirm.select's "nowait" is spelled "no-wait" everywhere else.
var fieldOverrides = map[string]string{
	"class-id":  "FailingClassID",
	"method-id": "FailingMethodID",
	"nowait":    "NoWait",
}

// propertyOverrides renames content properties.
var propertyOverrides = map[string]string{
	"reserved": "ClusterID", // was cluster-id in 0-9
}

// methodNames are the names of the Method interface; no field may use them.
var methodNames = map[string]bool{
	"ClassID": true, "MethodID": true, "Name": true, "HasContent": true, "Synchronous": true,
}

var initialisms = map[string]string{
	"id": "ID", "url": "URL", "ttl": "TTL", "api": "API", "uri": "URI",
}

// camel converts a spec name ("delivery-tag", "reserved-1") to Go CamelCase.
func camel(name string) string {
	var b strings.Builder
	for _, part := range strings.FieldsFunc(name, func(r rune) bool { return r == '-' || r == '_' || r == ' ' }) {
		if s, ok := initialisms[part]; ok {
			b.WriteString(s)
			continue
		}
		b.WriteString(strings.ToUpper(part[:1]))
		b.WriteString(part[1:])
	}
	return b.String()
}

type generator struct {
	spec    xmlSpec
	domains map[string]string
	buf     bytes.Buffer
}

func (g *generator) p(format string, args ...any) {
	fmt.Fprintf(&g.buf, format, args...)
	g.buf.WriteByte('\n')
}

func (g *generator) resolve(f xmlField, overrides map[string]string) (field, error) {
	t := f.Type
	if t == "" {
		var ok bool
		t, ok = g.domains[f.Domain]
		if !ok {
			return field{}, fmt.Errorf("field %q: unknown domain %q", f.Name, f.Domain)
		}
	}
	// Domains may in principle refer to other domains; follow the chain.
	for i := 0; i < 8; i++ {
		if _, ok := primitives[t]; ok {
			break
		}
		next, ok := g.domains[t]
		if !ok || next == t {
			break
		}
		t = next
	}
	if _, ok := primitives[t]; !ok {
		return field{}, fmt.Errorf("field %q: unsupported type %q", f.Name, t)
	}
	name := camel(f.Name)
	if o, ok := overrides[f.Name]; ok {
		name = o
	}
	if methodNames[name] {
		return field{}, fmt.Errorf("field %q: Go name %s collides with a Method method", f.Name, name)
	}
	dom := f.Domain
	if dom == "" {
		dom = t
	}
	return field{specName: f.Name, goName: name, amqpType: t, domain: dom}, nil
}

// Generate returns the gofmt'd source of methods_gen.go for the given spec.
func Generate(specXML []byte) ([]byte, error) {
	g := &generator{domains: map[string]string{}}
	if err := xml.Unmarshal(specXML, &g.spec); err != nil {
		return nil, fmt.Errorf("parse spec: %w", err)
	}
	for _, d := range g.spec.Domains {
		g.domains[d.Name] = d.Type
	}
	if err := g.generate(); err != nil {
		return nil, err
	}
	src, err := format.Source(g.buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("gofmt generated code: %w\n%s", err, g.buf.Bytes())
	}
	return src, nil
}

func (g *generator) generate() error {
	usesTime := false
	type method struct {
		class    xmlClass
		m        xmlMethod
		typeName string
		fields   []field
	}
	var methods []method
	seen := map[string]bool{}
	ids := map[[2]int]string{}
	for _, c := range g.spec.Classes {
		for _, m := range c.Methods {
			tn := camel(c.Name) + camel(m.Name)
			if seen[tn] {
				return fmt.Errorf("duplicate type name %s", tn)
			}
			seen[tn] = true
			key := [2]int{c.Index, m.Index}
			if prev, ok := ids[key]; ok {
				return fmt.Errorf("%s and %s share class/method ids %v", prev, tn, key)
			}
			ids[key] = tn
			mm := method{class: c, m: m, typeName: tn}
			names := map[string]bool{}
			for _, xf := range m.Fields {
				f, err := g.resolve(xf, fieldOverrides)
				if err != nil {
					return fmt.Errorf("%s.%s: %w", c.Name, m.Name, err)
				}
				if names[f.goName] {
					return fmt.Errorf("%s.%s: duplicate field %s", c.Name, m.Name, f.goName)
				}
				names[f.goName] = true
				if f.amqpType == "timestamp" {
					usesTime = true
				}
				mm.fields = append(mm.fields, f)
			}
			methods = append(methods, mm)
		}
	}
	var props []field
	var propClass string
	for _, c := range g.spec.Classes {
		if len(c.Fields) == 0 {
			continue
		}
		if propClass != "" {
			return fmt.Errorf("content properties in classes %s and %s; only one is supported", propClass, c.Name)
		}
		propClass = c.Name
		for _, xf := range c.Fields {
			f, err := g.resolve(xf, propertyOverrides)
			if err != nil {
				return fmt.Errorf("%s properties: %w", c.Name, err)
			}
			if f.amqpType == "bit" {
				return fmt.Errorf("%s properties: bit property %s not supported", c.Name, f.specName)
			}
			if f.amqpType == "timestamp" {
				usesTime = true
			}
			props = append(props, f)
		}
		if len(props) > 15 {
			return fmt.Errorf("%s has %d properties; more than one flag word is not supported", c.Name, len(props))
		}
	}

	g.p("// Code generated by gen; DO NOT EDIT.")
	g.p("// Source: spec/amqp0-9-1.xml")
	g.p("")
	g.p("package frame")
	g.p("")
	if usesTime {
		g.p(`import "time"`)
		g.p("")
	}

	// Reply codes.
	g.p("// Reply codes, from the constants of the specification.")
	g.p("const (")
	var hard []string
	for _, c := range g.spec.Constants {
		// Reply codes are the soft and hard errors plus reply-success; the
		// other constants (frame-method, frame-end, ...) are hand-written
		// in frame.go.
		if c.Class == "" && !strings.HasPrefix(c.Name, "reply-") {
			continue
		}
		if c.Value < 0 || c.Value > 0xFFFF {
			return fmt.Errorf("constant %s: value %d does not fit uint16", c.Name, c.Value)
		}
		n := camel(c.Name)
		cls := c.Class
		if cls == "" {
			cls = "reply code"
		}
		g.p("%s uint16 = %d // %s (%s)", n, c.Value, c.Name, cls)
		if c.Class == "hard-error" {
			hard = append(hard, n)
		}
	}
	g.p(")")
	g.p("")
	g.p("// IsHardError reports whether code is a hard-error reply code, i.e. one")
	g.p("// that must be reported with connection.close rather than channel.close.")
	g.p("func IsHardError(code uint16) bool {")
	g.p("switch code {")
	if len(hard) > 0 {
		g.p("case %s:", strings.Join(hard, ", "))
		g.p("return true")
	}
	g.p("}")
	g.p("return false")
	g.p("}")
	g.p("")

	// Class ids.
	g.p("// Class ids.")
	g.p("const (")
	for _, c := range g.spec.Classes {
		g.p("Class%s uint16 = %d // %s", camel(c.Name), c.Index, c.Name)
	}
	g.p(")")
	g.p("")

	// Methods.
	for _, mm := range methods {
		g.genMethod(mm.class, mm.m, mm.typeName, mm.fields)
	}

	// Factory.
	g.p("// newMethod returns a new zero method for the ids, or nil if unknown.")
	g.p("func newMethod(classID, methodID uint16) Method {")
	g.p("switch classID {")
	for _, c := range g.spec.Classes {
		g.p("case Class%s:", camel(c.Name))
		g.p("switch methodID {")
		for _, mm := range methods {
			if mm.class.Name != c.Name {
				continue
			}
			g.p("case %d:", mm.m.Index)
			g.p("return new(%s)", mm.typeName)
		}
		g.p("}")
	}
	g.p("}")
	g.p("return nil")
	g.p("}")
	g.p("")

	if propClass != "" {
		g.genProperties(propClass, props)
	}
	return nil
}

func flagBool(s string) bool { return s == "1" }

func (g *generator) genMethod(c xmlClass, m xmlMethod, tn string, fields []field) {
	name := c.Name + "." + m.Name
	var notes []string
	if flagBool(m.Synchronous) {
		notes = append(notes, "synchronous")
	}
	if flagBool(m.Content) {
		notes = append(notes, "carries content")
	}
	if flagBool(m.Deprecated) {
		notes = append(notes, "deprecated")
	}
	note := ""
	if len(notes) > 0 {
		note = "; " + strings.Join(notes, ", ")
	}
	g.p("// %s is the %s method (class %d, method %d%s).", tn, name, c.Index, m.Index, note)
	g.p("type %s struct {", tn)
	for _, f := range fields {
		comment := f.specName + " (" + f.amqpType + ")"
		if f.domain != f.amqpType {
			comment = f.specName + " (" + f.domain + ", " + f.amqpType + ")"
		}
		g.p("%s %s // %s", f.goName, primitives[f.amqpType].goType, comment)
	}
	g.p("}")
	g.p("")
	g.p("// ClassID returns %d (%s).", c.Index, c.Name)
	g.p("func (*%s) ClassID() uint16 { return Class%s }", tn, camel(c.Name))
	g.p("")
	g.p("// MethodID returns %d.", m.Index)
	g.p("func (*%s) MethodID() uint16 { return %d }", tn, m.Index)
	g.p("")
	g.p("// Name returns %q.", name)
	g.p("func (*%s) Name() string { return %q }", tn, name)
	g.p("")
	g.p("// HasContent reports whether %s is followed by a content header and body.", name)
	g.p("func (*%s) HasContent() bool { return %v }", tn, flagBool(m.Content))
	g.p("")
	g.p("// Synchronous reports whether %s expects a response.", name)
	g.p("func (*%s) Synchronous() bool { return %v }", tn, flagBool(m.Synchronous))
	g.p("")

	// decode
	recv := "m"
	if len(fields) == 0 {
		g.p("func (*%s) decode(r *decoder) error { return r.err }", tn)
		g.p("")
		g.p("func (*%s) encode(*encoder) {}", tn)
		g.p("")
		return
	}
	g.p("func (%s *%s) decode(r *decoder) error {", recv, tn)
	groups := groupFields(fields)
	nbits := 0
	for _, grp := range groups {
		if grp[0].amqpType != "bit" {
			f := grp[0]
			g.p("%s.%s = r.%s()", recv, f.goName, primitives[f.amqpType].method)
			continue
		}
		v := fmt.Sprintf("bits%d", nbits)
		nbits++
		g.p("%s := r.octet()", v)
		for i, f := range grp {
			g.p("%s.%s = %s&(1<<%d) != 0", recv, f.goName, v, i)
		}
	}
	g.p("return r.err")
	g.p("}")
	g.p("")

	// encode
	g.p("func (%s *%s) encode(w *encoder) {", recv, tn)
	nbits = 0
	for _, grp := range groups {
		if grp[0].amqpType != "bit" {
			f := grp[0]
			g.p("w.%s(%s.%s)", primitives[f.amqpType].method, recv, f.goName)
			continue
		}
		v := fmt.Sprintf("bits%d", nbits)
		nbits++
		g.p("var %s uint8", v)
		for i, f := range grp {
			g.p("if %s.%s {", recv, f.goName)
			g.p("%s |= 1 << %d", v, i)
			g.p("}")
		}
		g.p("w.octet(%s)", v)
	}
	g.p("}")
	g.p("")
}

// groupFields splits fields into groups: each non-bit field alone, and runs
// of consecutive bit fields of at most 8 (one octet each).
func groupFields(fields []field) [][]field {
	var groups [][]field
	for i := 0; i < len(fields); {
		if fields[i].amqpType != "bit" {
			groups = append(groups, fields[i:i+1])
			i++
			continue
		}
		j := i
		for j < len(fields) && fields[j].amqpType == "bit" && j-i < 8 {
			j++
		}
		groups = append(groups, fields[i:j])
		i = j
	}
	return groups
}

func (g *generator) genProperties(class string, props []field) {
	g.p("// Properties are the content header properties of the %s class.", class)
	g.p("// A property is sent (its flag bit set) when its value is non-zero.")
	g.p("type Properties struct {")
	for i, f := range props {
		g.p("%s %s // %s (%s), flag bit %d", f.goName, primitives[f.amqpType].goType, f.specName, f.amqpType, 15-i)
	}
	g.p("}")
	g.p("")
	g.p("// propertyMask has a bit set for every known property flag.")
	mask := 0
	for i := range props {
		mask |= 1 << (15 - i)
	}
	g.p("const propertyMask uint16 = %#04x", mask)
	g.p("")
	g.p("// flags returns the property flags word (bit 0, continuation, is never set).")
	g.p("func (p *Properties) flags() uint16 {")
	g.p("var f uint16")
	for i, f := range props {
		g.p("if %s {", fmt.Sprintf(primitives[f.amqpType].zero, "p."+f.goName))
		g.p("f |= 1 << %d", 15-i)
		g.p("}")
	}
	g.p("return f")
	g.p("}")
	g.p("")
	g.p("// encode appends the property list for flags f (as returned by flags).")
	g.p("func (p *Properties) encode(w *encoder, f uint16) {")
	for i, f := range props {
		g.p("if f&(1<<%d) != 0 {", 15-i)
		g.p("w.%s(p.%s)", primitives[f.amqpType].method, f.goName)
		g.p("}")
	}
	g.p("}")
	g.p("")
	g.p("// decode reads the property list for flags f into p.")
	g.p("func (p *Properties) decode(r *decoder, f uint16) {")
	for i, f := range props {
		g.p("if f&(1<<%d) != 0 {", 15-i)
		g.p("p.%s = r.%s()", f.goName, primitives[f.amqpType].method)
		g.p("}")
	}
	g.p("}")
}
