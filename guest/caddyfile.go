package guest

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// UnmarshalCaddyfile reads a guest module's Caddyfile tokens into v, a
// pointer to the module's config struct, by the struct's JSON field names:
//
//	<name> [<arg>...] [{
//		<field> <value>...
//	}]
//
// The arguments on the module's own line fill, in order, the fields tagged
// `caddyfile:"arg"`; a []string one takes all the arguments left. Each line
// of the block sets the field whose JSON name it starts with. So a module
//
//	type RedisStats struct {
//		URL    string `json:"url" caddyfile:"arg"`
//		Prefix string `json:"prefix,omitempty"`
//	}
//
// reads `redisstats redis://127.0.0.1:6379/0 { prefix gw: }`. Values are
// parsed by the field's type: string; bool (the field's name alone is
// true, or write true or false); the integer and float types;
// caddy.Duration and time.Duration (1m30s, 2d); []string (every value;
// repeated lines add more). Fields of embedded structs count as the
// module's own, as in encoding/json. Placeholders such as {env.KEY} are
// kept as written, for the module's Provision to resolve.
//
// Errors name the file and line: an unknown field (listing the known
// ones), a value of the wrong type, too many arguments, a field given
// twice. Required fields and ranges are the module's to check, in
// Provision or Validate, where JSON configs are checked too.
//
// The llm_* hosts call UnmarshalCaddyfile for a guest module that has no
// UnmarshalCaddyfile method; a module with other needs writes its own, and
// may call this one for the common part.
func UnmarshalCaddyfile(d *caddyfile.Dispenser, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("guest.UnmarshalCaddyfile needs a pointer to a struct, got %T", v)
	}
	fields, args := fieldsOf(rv.Elem())
	d.Next() // the module's name
	name := d.Val()
	set := map[string]bool{}

	values := d.RemainingArgs()
	for _, f := range args {
		if len(values) == 0 {
			break
		}
		n := 1
		if f.value.Kind() == reflect.Slice {
			n = len(values)
		}
		if err := f.set(d, name, values[:n]); err != nil {
			return err
		}
		set[f.name] = true
		values = values[n:]
	}
	if len(values) > 0 {
		return d.Errf("%s takes %s, not '%s'", name, argsSyntax(args), strings.Join(values, " "))
	}

	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		f, ok := fields[sub]
		if !ok {
			return d.Errf("unknown %s subdirective '%s'; it takes %s", name, sub, known(fields))
		}
		if set[sub] && f.value.Kind() != reflect.Slice {
			return d.Errf("%s: '%s' is given twice", name, sub)
		}
		if err := f.set(d, name, d.RemainingArgs()); err != nil {
			return err
		}
		set[sub] = true
		if d.NextBlock(d.Nesting()) {
			return d.Errf("%s: '%s' takes no block", name, sub)
		}
	}
	return nil
}

// field is one settable field of a config struct.
type field struct {
	name  string
	value reflect.Value
}

// fieldsOf lists s's fields by JSON name, and those tagged as arguments in
// order, descending into embedded structs as encoding/json does.
func fieldsOf(s reflect.Value) (map[string]field, []field) {
	fields := map[string]field{}
	var args []field
	t := s.Type()
	for i := range t.NumField() {
		sf := t.Field(i)
		tag, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if tag == "-" {
			continue
		}
		if sf.Anonymous && tag == "" && sf.Type.Kind() == reflect.Struct {
			inner, innerArgs := fieldsOf(s.Field(i))
			for name, f := range inner {
				if _, shadowed := fields[name]; !shadowed {
					fields[name] = f
				}
			}
			args = append(args, innerArgs...)
			continue
		}
		if !sf.IsExported() {
			continue
		}
		f := field{name: tag, value: s.Field(i)}
		if f.name == "" {
			f.name = sf.Name
		}
		fields[f.name] = f
		if sf.Tag.Get("caddyfile") == "arg" {
			args = append(args, f)
		}
	}
	return fields, args
}

var (
	caddyDuration = reflect.TypeFor[caddy.Duration]()
	timeDuration  = reflect.TypeFor[time.Duration]()
)

// set parses values into the field.
func (f field) set(d *caddyfile.Dispenser, module string, values []string) error {
	v := f.value
	if v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String {
		if len(values) == 0 {
			return d.Errf("%s: '%s' needs at least one value", module, f.name)
		}
		v.Set(reflect.AppendSlice(v, reflect.ValueOf(values)))
		return nil
	}
	if v.Kind() == reflect.Bool && len(values) == 0 {
		v.SetBool(true)
		return nil
	}
	if len(values) != 1 {
		return d.Errf("%s: '%s' takes one value, got %d", module, f.name, len(values))
	}
	s := values[0]
	bad := func(what string) error {
		return d.Errf("%s: %s: '%s' is not %s", module, f.name, s, what)
	}
	switch {
	case v.Type() == caddyDuration || v.Type() == timeDuration:
		dur, err := caddy.ParseDuration(s)
		if err != nil {
			return bad("a duration such as 30s or 1h")
		}
		v.SetInt(int64(dur))
		return nil
	case v.Kind() == reflect.String:
		v.SetString(s)
		return nil
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return bad("true or false")
		}
		v.SetBool(b)
		return nil
	case v.CanInt():
		n, err := strconv.ParseInt(s, 10, v.Type().Bits())
		if err != nil {
			return bad("a whole number")
		}
		v.SetInt(n)
		return nil
	case v.CanUint():
		n, err := strconv.ParseUint(s, 10, v.Type().Bits())
		if err != nil {
			return bad("a whole number of 0 or more")
		}
		v.SetUint(n)
		return nil
	case v.CanFloat():
		n, err := strconv.ParseFloat(s, v.Type().Bits())
		if err != nil {
			return bad("a number")
		}
		v.SetFloat(n)
		return nil
	}
	return d.Errf("%s: '%s' (%s) cannot be set in the Caddyfile; use the JSON config, or give the module an UnmarshalCaddyfile method", module, f.name, v.Type())
}

// argsSyntax describes the arguments a module takes, for errors.
func argsSyntax(args []field) string {
	if len(args) == 0 {
		return "no arguments"
	}
	parts := make([]string, len(args))
	for i, f := range args {
		parts[i] = "[<" + f.name + ">]"
		if f.value.Kind() == reflect.Slice {
			parts[i] = "[<" + f.name + ">...]"
		}
	}
	return "the arguments " + strings.Join(parts, " ")
}

// known lists the field names, sorted, for errors.
func known(fields map[string]field) string {
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	if len(names) == 0 {
		return "no subdirectives"
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}
