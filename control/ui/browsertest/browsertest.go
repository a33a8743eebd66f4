package browsertest

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Path is where the tests look for Chromium.
const Path = "/usr/bin/chromium"

// Page is a rendered page.
type Page struct {
	// DOM is the serialized document after scripts ran.
	DOM string
	// Screenshot is the decoded PNG and PNGBytes its file.
	Screenshot image.Image
	PNGBytes   []byte
}

// Render loads url (http:// or https://127.0.0.1..., the latter with any
// certificate accepted: a test's own CA) in headless Chromium, lets its
// scripts run for budget of virtual time, and returns the DOM and a
// screenshot. It skips t when Chromium is not installed. With
// WEFT_SCREENSHOT_DIR set, the screenshot is also saved there.
func Render(t testing.TB, url string, budget time.Duration) Page {
	t.Helper()
	if !strings.HasPrefix(url, "http://127.0.0.1:") && !strings.HasPrefix(url, "https://127.0.0.1:") {
		t.Fatalf("browsertest: %s is not a loopback URL", url)
	}
	var extra []string
	if strings.HasPrefix(url, "https://") {
		extra = append(extra, "--ignore-certificate-errors")
	}
	if _, err := os.Stat(Path); err != nil {
		t.Skipf("browsertest: %s is missing (apt-get install -y chromium): %v", Path, err)
	}
	dir := t.TempDir()
	shot := filepath.Join(dir, "shot.png")
	// Both at the screenshot's size, so what the DOM says of the layout
	// (a width a page records) holds for the picture.
	dom := run(t, dir, "dom", budget, append(extra, "--window-size=1280,900", "--dump-dom", url)...)
	run(t, dir, "shot", budget, append(extra, "--screenshot="+shot, "--window-size=1280,900", url)...)
	b, err := os.ReadFile(shot)
	if err != nil {
		t.Fatalf("browsertest: no screenshot: %v", err)
	}
	if keep := os.Getenv("WEFT_SCREENSHOT_DIR"); keep != "" { // to look at the page by eye
		_ = os.WriteFile(filepath.Join(keep, strings.ReplaceAll(t.Name(), "/", "_")+".png"), b, 0o644)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("browsertest: screenshot is not a PNG: %v", err)
	}
	return Page{DOM: dom, Screenshot: img, PNGBytes: b}
}

// run starts one Chromium with a fresh profile in its own process group,
// killed whole if it overstays.
func run(t testing.TB, dir, name string, budget time.Duration, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--hide-scrollbars",
		"--user-data-dir=" + filepath.Join(dir, "profile-"+name),
		"--virtual-time-budget=" + itoa(int(budget/time.Millisecond)),
	}
	cmd := exec.CommandContext(ctx, Path, append(base, args...)...)
	ownGroup(t, cmd)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("browsertest: chromium %s: %v\n%s", name, err, tail(stderr.String()))
	}
	return stdout.String()
}

func itoa(n int) string {
	if n <= 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

func tail(s string) string {
	if len(s) > 4000 {
		return s[len(s)-4000:]
	}
	return s
}

// CheckPicture fails t unless img is at least w×h and is not a flat
// picture: it must hold at least minColors distinct colours.
func CheckPicture(t testing.TB, img image.Image, w, h, minColors int) {
	t.Helper()
	b := img.Bounds()
	if b.Dx() < w || b.Dy() < h {
		t.Fatalf("screenshot is %dx%d, want at least %dx%d", b.Dx(), b.Dy(), w, h)
	}
	seen := map[[4]uint32]bool{}
	for y := b.Min.Y; y < b.Max.Y; y += 3 {
		for x := b.Min.X; x < b.Max.X; x += 3 {
			r, g, bl, a := img.At(x, y).RGBA()
			seen[[4]uint32{r >> 8, g >> 8, bl >> 8, a >> 8}] = true
		}
	}
	if len(seen) < minColors {
		t.Fatalf("screenshot has %d distinct colours, want at least %d: a blank or flat page", len(seen), minColors)
	}
}
