package demo

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"
	"time"
)

// The JSON of `rampart raid status --json` during a rebuild, as documented by the
// RAID control socket.
const rebuildingReport = `{"name":"md0","uuid":"f7ad1fd3-0000","level":5,"raid_devices":3,"active":2,
 "degraded":true,"rebuilding":true,"progress":0.48,"failed":false,"clean":true,"events":4,
 "chunk_bytes":65536,"size_bytes":1069154304,
 "members":[{"role":0,"name":"/d/spare.img","state":"rebuilding"},{"role":1,"name":"/d/disk2.img","state":"active"},
            {"role":2,"name":"/d/disk3.img","state":"active"},{"role":-1,"name":"/d/other.img","state":"spare"}],
 "served_by":4242,"mdstat":"md0 : active raid5 ..."}`

func TestRaidReportMembersByRole(t *testing.T) {
	var r raidReport
	if err := json.Unmarshal([]byte(rebuildingReport), &r); err != nil {
		t.Fatal(err)
	}
	if !r.Degraded || !r.Rebuilding || r.ServedBy != 4242 || r.SizeBytes != 1069154304 {
		t.Errorf("decoded %+v", r)
	}
	if got, want := r.memberNames(), []string{"/d/spare.img", "/d/disk2.img", "/d/disk3.img"}; !slices.Equal(got, want) {
		t.Errorf("memberNames = %q, want %q (by role, spares left out)", got, want)
	}
	if got, want := memberStates(r), "spare.img rebuilding, disk2.img active, disk3.img active, other.img spare"; got != want {
		t.Errorf("memberStates = %q, want %q", got, want)
	}
}

func TestCountsKeepTheLongestRequestAndFirstErrors(t *testing.T) {
	c := &client{written: map[string]string{}, fetching: map[string]bool{}}
	c.record(10*time.Millisecond, nil, false)
	c.record(2*time.Second, nil, true)
	for i := 0; i < 10; i++ {
		c.record(time.Millisecond, errTest, false)
	}
	got := c.take()
	if got.Requests != 12 || got.Failures != 10 || got.Mismatches != 1 || got.Longest != 2*time.Second || len(got.Errors) != 5 {
		t.Errorf("counts %+v, want 12 requests, 10 failures, 1 mismatch, longest 2s, 5 errors kept", got)
	}
	if again := c.take(); again.Requests != 0 {
		t.Errorf("take did not start new counts: %+v", again)
	}
}

type testError struct{}

func (testError) Error() string { return "boom" }

var errTest = testError{}

func TestFormatSummary(t *testing.T) {
	var b bytes.Buffer
	FormatSummary(&b, []StepResult{
		{Name: "cut", Counts: Counts{Requests: 219, Longest: 1426 * time.Millisecond}},
		{Name: "raid", Skipped: "no socket"},
		{Name: "kill", Counts: Counts{Requests: 65, Failures: 1, Longest: 143 * time.Millisecond}},
		{Name: "master", Counts: Counts{Requests: 9}, Failures: []string{"not back"}},
	})
	want := `STEP    INTERRUPTION  REQUESTS  FAILED  MISMATCHES  RESULT
cut     1.426s        219       0       0           ok
raid    -             0         0       0           skipped
kill    143ms         65        1       0           FAILED
master  0s            9         0       0           FAILED
`
	if got := b.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
