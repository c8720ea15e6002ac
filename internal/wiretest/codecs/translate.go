package codecs

import (
	"encoding/json"
	"testing"

	"github.com/llmoneapi/llmoneapi/internal/wiretest"
)

// Translation is a client → upstream pair the gateway runs, with a request
// fixture of the client's format and a response and a stream fixture of
// the upstream's (paths relative to the test's package).
type Translation struct {
	Client, Upstream, Request, Response, Stream string
}

// created is the creation time given to formats without one (they get the
// time of translation), to keep the golden files stable.
const created = 1780009999

// RunTranslations runs each client format's fixtures through each upstream
// format and back, against golden files in
// testdata/translate/<client>-<upstream>/.
func RunTranslations(t *testing.T, translations []Translation) {
	for _, tr := range translations {
		t.Run(tr.Client+"-to-"+tr.Upstream, func(t *testing.T) {
			client, upstream := All[tr.Client], All[tr.Upstream]
			dir := "testdata/translate/" + tr.Client + "-" + tr.Upstream + "/"

			req, err := client.DecodeRequest(wiretest.Read(t, tr.Request))
			if err != nil {
				t.Fatal(err)
			}
			req.Model = "upstream-model"
			body, dropped, err := upstream.EncodeRequest(req)
			if err != nil {
				t.Fatal(err)
			}
			wiretest.Golden(t, dir+"request.json", wiretest.JSON(t, map[string]any{
				"body": json.RawMessage(body), "dropped_by_client_codec": req.Dropped, "dropped_by_upstream_codec": dropped,
			}))

			resp, err := upstream.DecodeResponse(wiretest.Read(t, tr.Response))
			if err != nil {
				t.Fatal(err)
			}
			if resp.Created == 0 {
				resp.Created = created
			}
			out, err := client.EncodeResponse(resp)
			if err != nil {
				t.Fatal(err)
			}
			wiretest.Golden(t, dir+"response.json", out)

			evs := upstream.DecodeStream(t, wiretest.Read(t, tr.Stream))
			if evs[0].Created == 0 {
				evs[0].Created = created
			}
			stream := client.EncodeStream(evs)
			wiretest.Golden(t, dir+"stream.sse", stream)
			// What the client gets must read back as a whole stream in
			// its own format.
			client.DecodeStream(t, stream)
		})
	}
}
