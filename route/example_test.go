package route_test

import (
	"fmt"
	"net/http"
	"slices"

	"github.com/llmoneapi/llmoneapi/route"
)

// mapCatalog is a Catalog over a map of model names.
type mapCatalog map[string]*route.Model

func (c mapCatalog) Lookup(name string) *route.Model { return c[name] }

func (c mapCatalog) List() []*route.Model {
	names := make([]string, 0, len(c))
	for name := range c {
		names = append(names, name)
	}
	slices.Sort(names) // List must be in a stable order
	models := make([]*route.Model, len(names))
	for i, name := range names {
		models[i] = c[name]
	}
	return models
}

// A Catalog finds models by name; a nil Model lets the next catalog answer.
func ExampleCatalog() {
	var c route.Catalog = mapCatalog{
		"gpt-4o":      {Name: "gpt-4o"},
		"gpt-4o-mini": {Name: "gpt-4o-mini"},
	}
	for _, m := range c.List() {
		fmt.Println(m.Name)
	}
	fmt.Println(c.Lookup("claude") == nil)
	// Output:
	// gpt-4o
	// gpt-4o-mini
	// true
}

// heaviest is a Policy that always picks the candidate of the largest weight.
type heaviest struct{}

func (heaviest) Select(candidates []*route.Upstream, _ *route.PolicyState, _ *http.Request) *route.Upstream {
	return slices.MaxFunc(candidates, func(a, b *route.Upstream) int { return a.Weight - b.Weight })
}

// A Policy picks one of the upstreams that are available and not yet tried;
// the route handler never gives it an empty list.
func ExamplePolicy() {
	var p route.Policy = heaviest{}
	candidates := []*route.Upstream{
		{URL: "https://a.example/v1", Weight: 1},
		{URL: "https://b.example/v1", Weight: 3},
	}
	fmt.Println(p.Select(candidates, new(route.PolicyState), nil).URL)
	// b.example failed: the next try gets the remaining candidates.
	fmt.Println(p.Select(candidates[:1], new(route.PolicyState), nil).URL)
	// Output:
	// https://b.example/v1
	// https://a.example/v1
}
