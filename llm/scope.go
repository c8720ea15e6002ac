package llm

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Scope is a list of model names and glob patterns. In a pattern, '*' matches
// any run of characters (slashes too, so "meta-llama/*" and "*" both work on
// names like "meta-llama/Llama-3.1-8B"), '?' matches one character and
// '[...]' one character of a class ("[a-z]", "[!0-9]"). An empty Scope allows
// every model.
type Scope []string

// Validate reports the first malformed pattern.
func (s Scope) Validate() error {
	for _, p := range s {
		if p == "" {
			return errors.New("empty model pattern")
		}
		if _, err := glob(p, ""); err != nil {
			return fmt.Errorf("bad model pattern '%s': %v", p, err)
		}
	}
	return nil
}

// Allows reports whether model is in the scope.
func (s Scope) Allows(model string) bool {
	if len(s) == 0 {
		return true
	}
	for _, p := range s {
		if ok, _ := glob(p, model); ok {
			return true
		}
	}
	return false
}

var errBadClass = errors.New("unterminated '[' class")

// glob matches name against pattern, backtracking only to the last '*'. The
// whole pattern is always scanned, so a malformed class is reported whatever
// the name.
func glob(pattern, name string) (bool, error) {
	px, nx := 0, 0
	starPx, starNx := -1, -1
	matched := true
	for px < len(pattern) || nx < len(name) {
		if px < len(pattern) {
			switch c := pattern[px]; c {
			case '*':
				starPx, starNx = px, nx
				px++
				continue
			case '?':
				if nx < len(name) {
					px++
					nx++
					continue
				}
			case '[':
				end := strings.IndexByte(pattern[px+1:], ']')
				if end < 0 {
					return false, errBadClass
				}
				class := pattern[px+1 : px+1+end]
				if nx < len(name) && inClass(class, name[nx]) {
					px += end + 2
					nx++
					continue
				}
			default:
				if nx < len(name) && name[nx] == c {
					px++
					nx++
					continue
				}
			}
		}
		if starPx >= 0 && starNx < len(name) {
			starNx++
			px, nx = starPx+1, starNx
			continue
		}
		matched = false
		break
	}
	// Check the rest of the pattern for malformed classes.
	for i := px; i < len(pattern); i++ {
		if pattern[i] == '[' {
			end := strings.IndexByte(pattern[i+1:], ']')
			if end < 0 {
				return false, errBadClass
			}
			i += end + 1
		}
	}
	return matched, nil
}

// inClass reports whether c is in a class body such as "a-z0-9" or "!x".
func inClass(class string, c byte) bool {
	negate := strings.HasPrefix(class, "!")
	if negate {
		class = class[1:]
	}
	in := false
	for i := 0; i < len(class); i++ {
		if i+2 < len(class) && class[i+1] == '-' {
			if class[i] <= c && c <= class[i+2] {
				in = true
			}
			i += 2
			continue
		}
		if class[i] == c {
			in = true
		}
	}
	return in != negate
}

// CheckModel returns the 403 error for a model outside the identity's scope,
// or nil when the identity may use it. A nil Identity may use every model.
func (id *Identity) CheckModel(model string) *Error {
	if id == nil || id.Models.Allows(model) {
		return nil
	}
	e := Errorf(http.StatusForbidden, TypePermission, "model_not_allowed",
		"API key '%s' may not use model '%s'", id.KeyID, model)
	e.Param = "model"
	return e
}
