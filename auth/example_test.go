package auth_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/llmoneapi/llmoneapi/auth"
	"github.com/llmoneapi/llmoneapi/llm"
)

// keyTable is an Authenticator over a map: key -> user, "" for a disabled key.
type keyTable map[string]string

func (t keyTable) Authenticate(_ context.Context, key string) (*llm.Identity, error) {
	user, ok := t[key]
	switch {
	case !ok:
		return nil, nil // not our key: the next authenticator is asked
	case user == "":
		return nil, &auth.Refusal{Code: "api_key_disabled", Reason: "this API key is disabled"}
	}
	return &llm.Identity{User: user, KeyID: "table-" + user}, nil
}

// An Authenticator answers with an identity, with (nil, nil) for a key it
// does not know, or with a *Refusal for a key it knows and refuses; any other
// error means its store could not tell.
func ExampleAuthenticator() {
	var a auth.Authenticator = keyTable{"sk-alice": "alice", "sk-old": ""}
	for _, key := range []string{"sk-alice", "sk-old", "sk-unknown"} {
		id, err := a.Authenticate(context.Background(), key)
		var refusal *auth.Refusal
		switch {
		case errors.As(err, &refusal):
			fmt.Printf("%s: 401 %s\n", key, refusal.Code)
		case id != nil:
			fmt.Printf("%s: user %s, key id %s\n", key, id.User, id.KeyID)
		default:
			fmt.Printf("%s: not mine\n", key)
		}
	}
	// Output:
	// sk-alice: user alice, key id table-alice
	// sk-old: 401 api_key_disabled
	// sk-unknown: not mine
}
