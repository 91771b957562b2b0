package web

import (
	"context"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBrowserRendersConsole loads the pages in headless Chromium (Debian's
// chromium package): the DOM it builds holds the cluster's figures, and a
// screenshot of the overview is a 1200x900 PNG. It runs with
// RAMPART_BROWSER_TESTS=1 or RAMPART_ROOT_TESTS=1 when chromium is installed;
// RAMPART_SCREENSHOT_DIR keeps the screenshots.
func TestBrowserRendersConsole(t *testing.T) {
	if os.Getenv("RAMPART_BROWSER_TESTS") != "1" && os.Getenv("RAMPART_ROOT_TESTS") != "1" {
		t.Skip("set RAMPART_BROWSER_TESTS=1 to run headless Chromium")
	}
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (apt-get install chromium)")
	}
	k := startConsole(t)
	chromium := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
		defer cancel()
		// --no-sandbox: the sandbox refuses to run as root.
		base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
			"--user-data-dir=" + t.TempDir()}
		out, err := exec.CommandContext(ctx, bin, append(base, args...)...).Output()
		if err != nil {
			t.Fatalf("chromium %s: %v", strings.Join(args, " "), err)
		}
		return string(out)
	}
	dom := chromium("--dump-dom", k.url+"/")
	for _, want := range []string{"healthy: every chunk has its goal", "Chunkservers", "Chunk matrix"} {
		if !strings.Contains(dom, want) {
			t.Errorf("overview DOM in Chromium: no %q in:\n%s", want, dom)
		}
	}
	dom = chromium("--dump-dom", k.url+"/chunkservers")
	for _, cs := range k.cl.Chunkservers {
		if !strings.Contains(dom, cs.Addr()) {
			t.Errorf("chunkservers DOM in Chromium: no %s", cs.Addr())
		}
	}
	dir := os.Getenv("RAMPART_SCREENSHOT_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	shot := filepath.Join(dir, "web-overview.png")
	chromium("--screenshot="+shot, "--window-size=1200,900", k.url+"/")
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot %s: %v", shot, err)
	}
	if b := img.Bounds(); b.Dx() != 1200 || b.Dy() != 900 {
		t.Errorf("screenshot: got %dx%d, want 1200x900", b.Dx(), b.Dy())
	}
}
