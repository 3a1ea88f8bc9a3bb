package app

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/eclipse/paho.golang/paho"

	"github.com/mcloudtt/mcloudtt/services/health-gateway/internal/api"
)

// The status page's Clients view in a real headless Chromium, signed in with the admin token, on
// three real replicas: a search lists the matching clients of every replica, a client's session
// opens with its subscriptions, Kick ends a v5 client with DISCONNECT 0x98 and its row
// disappears, Ban kicks and bans. The screenshot is kept with `go test -artifacts`.
func TestClientsViewInChromium(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("%s: %v: run scripts/deps.sh browser (or apt-get install chromium)", chromiumPath, err)
	}
	c, addrs := startAPICluster(t)
	kicked, _ := connectV5(t, addrs["broker-b"], "dev-kick")
	stay, _ := connectV5(t, addrs["broker-c"], "dev-stay")
	banned, _ := connectV5(t, addrs["broker-a"], "dev-ban")
	connectV5(t, addrs["broker-a"], "other-client")
	if _, err := stay.Subscribe(context.Background(), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: "cmd/dev-stay/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}

	ctx := adminBrowser(t)
	rows := `[...document.querySelectorAll("#clients tbody tr")].map(r => r.dataset.client + "@" + r.dataset.replica)`
	if err := chromedp.Do(ctx,
		chromedp.Navigate(c.base+"/"),
		chromedp.WaitVisible(`#client-role`),
		chromedp.SendKeys(`#client-q`, "dev-"),
		chromedp.Click(`#client-search button[type=submit]`),
	); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the search lists the dev- clients of every replica",
		rows+`.join() === "dev-ban@broker-a,dev-kick@broker-b,dev-stay@broker-c"`)
	waitJS(t, ctx, "the role is shown", `document.getElementById("client-role").textContent === "signed in as admin"`)

	if err := chromedp.Do(ctx, chromedp.Click(`#clients a[data-client="dev-stay"]`)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the session of dev-stay opens", `!!document.querySelector('#session-subs tr[data-filter="cmd/dev-stay/#"]')`)

	if err := chromedp.Do(ctx, chromedp.Click(`button[data-action="kick"][data-client="dev-kick"]`)); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-kicked.disc:
		if d.ReasonCode != 0x98 {
			t.Fatalf("kicked from the page: DISCONNECT 0x%02X, want 0x98", d.ReasonCode)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Kick on the page did not disconnect the client")
	}
	waitJS(t, ctx, "the kicked client's row disappears", rows+`.join() === "dev-ban@broker-a,dev-stay@broker-c"`)
	waitJS(t, ctx, "the page says whom it kicked", `document.getElementById("client-msg").textContent.includes("Kicked dev-kick on broker-b")`)
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(t.ArtifactDir(), "clients-view.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the Clients view after the kick: %s (%d bytes)", shot, len(png))

	if err := chromedp.Do(ctx, chromedp.Click(`button[data-action="ban"][data-client="dev-ban"]`)); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-banned.disc:
		if d.ReasonCode != 0x98 {
			t.Fatalf("banned from the page: DISCONNECT 0x%02X", d.ReasonCode)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Ban on the page did not disconnect the client")
	}
	waitJS(t, ctx, "the banned client's row disappears", rows+`.join() === "dev-stay@broker-c"`)
	var bans api.BansAnswer
	c.callJSON("GET", "/api/v1/bans", readToken, nil, 200, &bans)
	if len(bans.Bans) != 1 || bans.Bans[0].Key() != "client_id:dev-ban" || bans.Bans[0].Reason != "status page" {
		t.Fatalf("bans after Ban on the page: %+v", bans)
	}
	if _, code := connectV5(t, addrs["broker-c"], "dev-ban"); code != 0x8A {
		t.Fatalf("dev-ban after Ban on the page: CONNACK 0x%02X, want 0x8A", code)
	}
}

// adminBrowser starts a headless Chromium whose requests carry the admin token, as a browser
// does once its user typed the token into the password prompt. It ends with the test.
func adminBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(chromiumPath), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.WindowSize(1400, 1000), chromedp.UserDataDir(t.TempDir()))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(cancelBrowser)
	ctx, cancel := context.WithTimeout(bctx, 90*time.Second)
	t.Cleanup(cancel)
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{
		Headers: network.Headers{"Authorization": "Bearer " + adminToken}}); err != nil {
		t.Fatal(err)
	}
	return ctx
}

// waitJS polls the page until the expression js is true.
func waitJS(t *testing.T, ctx context.Context, what, js string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
			t.Fatalf("%s: not within 15s; the page shows:\n%s", what, text)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
