package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestTargetFlag(t *testing.T) {
	var f targetFlags
	if err := f.Set("name=basic,url=http://127.0.0.1:1/v1,key=sk-x,pid=42"); err != nil {
		t.Fatal(err)
	}
	if got := *f[0]; got != (targetSpec{name: "basic", url: "http://127.0.0.1:1/v1", key: "sk-x", pid: 42}) {
		t.Errorf("parsed %+v", got)
	}
	for _, bad := range []string{"url=http://x", "name=a", "name=a,url=u,pid=x", "name=a,url=u,port=1", "name"} {
		if err := f.Set(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestSliced drives two servers in slices: each gets its turns and its
// requests, and never has one in flight while the other does.
func TestSliced(t *testing.T) {
	var inFlight [2]atomic.Int32
	var overlap, served [2]atomic.Int32
	servers := make([]*loader, 2)
	for i := range servers {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			inFlight[i].Add(1)
			if inFlight[1-i].Load() > 0 {
				overlap[i].Add(1)
			}
			time.Sleep(time.Millisecond)
			served[i].Add(1)
			inFlight[i].Add(-1)
			_, _ = io.WriteString(w, `{"choices":[]}`)
		}))
		defer srv.Close()
		servers[i] = newLoader(&targetSpec{name: "s", url: srv.URL + "/v1/"}, scenarios["chat"], 4, 5*time.Second, 0)
	}
	results, err := sliced(servers, 4, 200*time.Millisecond, 50*time.Millisecond, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	for i, res := range results {
		if res.Slices != 4 || res.Errors != 0 || res.Requests == 0 || res.WarmupRequests == 0 {
			t.Errorf("server %d: %d slices, %d requests (%d errors), %d warm-up: %s", i, res.Slices, res.Requests, res.Errors, res.WarmupRequests, res.FirstError)
		}
		if got, want := int(served[i].Load()), res.Requests+res.WarmupRequests; got != want {
			t.Errorf("server %d served %d requests, the result counts %d", i, got, want)
		}
		if n := overlap[i].Load(); n > 0 {
			t.Errorf("server %d had %d requests while the other had one in flight", i, n)
		}
		if res.Seconds < 0.2 || res.Seconds > 1 {
			t.Errorf("server %d measured for %.3f s, want about 0.2", i, res.Seconds)
		}
	}
	if !strings.HasSuffix(servers[0].url, "/v1/chat/completions") {
		t.Errorf("url %s", servers[0].url)
	}
}
