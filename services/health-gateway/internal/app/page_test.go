package app

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath is Debian's chromium, installed by `scripts/deps.sh browser` (make test does).
const chromiumPath = "/usr/bin/chromium"

// The status page in a real headless Chromium: it loads from the gateway's embedded assets, lists
// both replicas, shows the pair broker-a -> broker-b green, red once broker-b's Redis link is
// black-holed, and green again once it heals. A screenshot of the red page is saved with
// `go test -artifacts` (see testing.T.ArtifactDir).
func TestStatusPageInChromium(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("%s: %v: run scripts/deps.sh browser (or apt-get install chromium)", chromiumPath, err)
	}
	c := startCluster(t)
	c.waitFor("all green", 20*time.Second, allGreen)

	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(chromiumPath), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.WindowSize(1400, 900), chromedp.UserDataDir(t.TempDir()))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	ctx, cancel := context.WithTimeout(bctx, 90*time.Second)
	defer cancel()

	const cell = `#matrix td[data-pair="broker-a->broker-b"]`
	if err := chromedp.Do(ctx,
		chromedp.Navigate(c.base+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#members tbody tr[data-replica="broker-b"]`)),
	); err != nil {
		t.Fatalf("page did not load and list broker-b: %v", err)
	}
	replicas, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](
		`[...document.querySelectorAll("#members tbody tr")].map(r => r.dataset.replica)`))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(replicas, []string{"broker-a", "broker-b"}) {
		t.Fatalf("member table lists %v", replicas)
	}

	// waitPage polls the page until js (an expression) is true.
	waitPage := func(what, js string, timeout time.Duration) {
		t.Helper()
		deadline := time.Now().Add(timeout)
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
				t.Fatalf("%s: not within %s; the page shows:\n%s", what, timeout, text)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	cellIs := func(status string) string {
		return fmt.Sprintf(`(() => { const e = document.querySelector(%q); return !!e && e.classList.contains(%q); })()`, cell, status)
	}
	waitPage("pair cell green", cellIs("green"), 10*time.Second)
	waitPage("overall badge green", `document.getElementById("overall").textContent === "green"`, 10*time.Second)

	c.proxyB.Blackhole()
	waitPage("pair cell red", cellIs("red"), 20*time.Second)
	waitPage("overall badge red", `document.getElementById("overall").textContent === "red"`, 10*time.Second)
	// Red as a person sees it: the cell's computed background is the page's red (#cf222e).
	bg, err := chromedp.Run(ctx, chromedp.Evaluate[string](
		fmt.Sprintf(`getComputedStyle(document.querySelector(%q)).backgroundColor`, cell)))
	if err != nil {
		t.Fatal(err)
	}
	reason, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("reason").textContent`))
	if err != nil {
		t.Fatal(err)
	}
	if bg != "rgb(207, 34, 46)" {
		t.Fatalf("red pair cell has background %q", bg)
	}
	if !strings.Contains(reason, "broker-a -> broker-b") {
		t.Fatalf("the page's reason does not name the pair: %q", reason)
	}
	// Let one more refresh draw the sparklines' lost probes, then take the picture.
	time.Sleep(500 * time.Millisecond)
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(t.ArtifactDir(), "status-page-red.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the red page: %s (%d bytes)", shot, len(png))

	c.proxyB.Restore()
	waitPage("pair cell green again", cellIs("green"), 30*time.Second)
}
