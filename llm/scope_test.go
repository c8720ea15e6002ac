package llm

import "testing"

func TestScope(t *testing.T) {
	tests := []struct {
		scope Scope
		model string
		want  bool
	}{
		{nil, "anything", true},
		{Scope{"gpt-4o-mini"}, "gpt-4o-mini", true},
		{Scope{"gpt-4o-mini"}, "gpt-4o", false},
		{Scope{"text-embedding-*"}, "text-embedding-3-small", true},
		{Scope{"text-embedding-*"}, "text-embed", false},
		{Scope{"*"}, "meta-llama/Llama-3.1-8B", true},
		{Scope{"meta-llama/*"}, "meta-llama/Llama-3.1-8B", true},
		{Scope{"gpt-?o"}, "gpt-4o", true},
		{Scope{"gpt-[3-4]*"}, "gpt-4o", true},
		{Scope{"gpt-[!4]*"}, "gpt-4o", false},
		{Scope{"a*b*c"}, "axxbyyc", true},
		{Scope{"a*b*c"}, "axxbyy", false},
		{Scope{"claude-*", "gpt-4o"}, "gpt-4o", true},
	}
	for _, tt := range tests {
		if got := tt.scope.Allows(tt.model); got != tt.want {
			t.Errorf("%v.Allows(%q) = %v, want %v", tt.scope, tt.model, got, tt.want)
		}
	}
}

func TestScopeValidate(t *testing.T) {
	if err := (Scope{"gpt-*", "a[bc]d"}).Validate(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []Scope{{"gpt-[4"}, {""}, {"x*[a"}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestCheckModel(t *testing.T) {
	var none *Identity
	if none.CheckModel("x") != nil {
		t.Fatal("nil identity must allow every model")
	}
	id := &Identity{KeyID: "key-1", Models: Scope{"a"}}
	e := id.CheckModel("b")
	if e == nil || e.Status != 403 || e.Code != "model_not_allowed" || e.Message != "API key 'key-1' may not use model 'b'" {
		t.Fatalf("got %v", e)
	}
}
