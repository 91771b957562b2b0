package demo

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Counts are what the drill's client saw during one step.
type Counts struct {
	Requests   int           // site fetches, file writes and read-backs
	Failures   int           // requests that returned an error
	Mismatches int           // requests whose data did not match its checksum
	Longest    time.Duration // the longest single request: the interruption seen
	Errors     []string      // the first few failures
}

// client keeps fetching the site and writing files through the web host's mount,
// checking every byte against its SHA-256, while the drill breaks things.
type client struct {
	site, index string // URL and the page's checksum
	dir         string // drill files on the mount
	urlDir      string // and their URL
	http        *http.Client

	mu       sync.Mutex
	cur      Counts
	written  map[string]string // file name -> checksum, of the files kept
	n        int
	fetching map[string]bool // files being fetched, not to be deleted under the fetch
}

// keepFiles is how many of the files written the client keeps: older ones are deleted,
// so that a long drill does not fill the small disks of the lab.
const keepFiles = 8

func newClient(st *State, mount string) (*client, error) {
	dir := filepath.Join(mount, "drill")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("demo drill: %w", err)
	}
	return &client{site: st.Site, index: st.Index, dir: dir, urlDir: st.Site + "drill/",
		http: &http.Client{Timeout: 120 * time.Second}, written: map[string]string{}, fetching: map[string]bool{}}, nil
}

// record counts one request.
func (c *client) record(d time.Duration, err error, mismatch bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cur.Requests++
	c.cur.Longest = max(c.cur.Longest, d)
	if err != nil {
		c.cur.Failures++
		if len(c.cur.Errors) < 5 {
			c.cur.Errors = append(c.cur.Errors, time.Now().UTC().Format("15:04:05.000")+" "+err.Error())
		}
	}
	if mismatch {
		c.cur.Mismatches++
		if len(c.cur.Errors) < 5 {
			c.cur.Errors = append(c.cur.Errors, time.Now().UTC().Format("15:04:05.000")+" checksum mismatch")
		}
	}
}

// take returns the counts since the last take and starts new ones.
func (c *client) take() Counts {
	c.mu.Lock()
	defer c.mu.Unlock()
	got := c.cur
	c.cur = Counts{}
	return got
}

// run fetches and writes until ctx ends.
func (c *client) run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			c.fetchOnce(ctx)
			sleep(ctx, 100*time.Millisecond)
		}
	}()
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			c.writeOnce(ctx)
			sleep(ctx, 200*time.Millisecond)
		}
	}()
	wg.Wait()
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// fetchOnce GETs the site's page and the latest file written, over HTTP.
func (c *client) fetchOnce(ctx context.Context) {
	t := time.Now()
	sum, err := fetch(ctx, c.http, c.site)
	if ctx.Err() != nil {
		return
	}
	c.record(time.Since(t), err, err == nil && sum != c.index)
	c.mu.Lock()
	name, want := "", ""
	if c.n > 0 {
		name = fmt.Sprintf("f%06d", c.n-1)
		want = c.written[name]
		c.fetching[name] = true
	}
	c.mu.Unlock()
	if name == "" {
		return
	}
	t = time.Now()
	sum, err = fetch(ctx, c.http, c.urlDir+name)
	c.mu.Lock()
	delete(c.fetching, name)
	c.mu.Unlock()
	if ctx.Err() != nil {
		return
	}
	c.record(time.Since(t), err, err == nil && sum != want)
}

// writeOnce writes a new 64 KiB file through the mount, fsyncs it and reads it back.
func (c *client) writeOnce(ctx context.Context) {
	body := make([]byte, 64<<10)
	rand.Read(body)
	s := sha256.Sum256(body)
	want := hex.EncodeToString(s[:])
	c.mu.Lock()
	name := fmt.Sprintf("f%06d", c.n)
	c.mu.Unlock()
	path := filepath.Join(c.dir, name)
	t := time.Now()
	err := writeFileSync(path, body)
	if ctx.Err() != nil {
		return
	}
	c.record(time.Since(t), err, false)
	if err != nil {
		return
	}
	c.mu.Lock()
	c.written[name] = want
	c.n++
	c.mu.Unlock()
	t = time.Now()
	got, err := os.ReadFile(path)
	gs := sha256.Sum256(got)
	c.record(time.Since(t), err, err == nil && hex.EncodeToString(gs[:]) != want)
	c.mu.Lock()
	var old []string
	for name := range c.written {
		var k int
		if _, err := fmt.Sscanf(name, "f%06d", &k); err == nil && k < c.n-keepFiles && !c.fetching[name] {
			old = append(old, name)
			delete(c.written, name)
		}
	}
	c.mu.Unlock()
	for _, name := range old {
		t = time.Now()
		err := os.Remove(filepath.Join(c.dir, name))
		c.record(time.Since(t), err, false)
	}
}

func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// verifyAll reads back every file written, through the mount and over HTTP.
func (c *client) verifyAll(ctx context.Context) Counts {
	c.mu.Lock()
	files := make(map[string]string, len(c.written))
	for k, v := range c.written {
		files[k] = v
	}
	c.mu.Unlock()
	for name, want := range files {
		t := time.Now()
		got, err := os.ReadFile(filepath.Join(c.dir, name))
		gs := sha256.Sum256(got)
		c.record(time.Since(t), err, err == nil && hex.EncodeToString(gs[:]) != want)
		t = time.Now()
		sum, err := fetch(ctx, c.http, c.urlDir+name)
		c.record(time.Since(t), err, err == nil && sum != want)
	}
	return c.take()
}
