package hostile_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/ferrygw/ferry/gateway/internal/config"
)

// overhead is what the gateway's RSS may exceed its transfer memory budget by: the code and
// runtime (about 25 MiB idle), the GC's room for garbage (memory_limit, default 24 MiB) and the
// buffers of the SSH and SFTP layers and goroutine stacks of the sessions in a test (each SFTP
// session keeps up to ~30 packets of 32 KiB in flight; each channel some goroutines).
const overhead = 96 * MiB

// victimMemory is the transfer memory bob's 16 MiB upload and download take at most: four
// 5 MiB parts and a 4 MiB read-ahead ring.
const victimMemory = 24 * MiB

// defaults are the limits every test runs with unless it says otherwise.
var defaults = config.Default().Limits

// checkRSS fails (unless only measuring) when peak exceeds the overhead plus the transfer
// memory the gateway may hold during the attack: the attacker's share of the budget and bob's
// transfer, never more than the budget.
func checkRSS(t *testing.T, peak, budget, share int64) {
	t.Helper()
	if measureOnly() {
		return
	}
	transfer := min(budget, share+victimMemory)
	if peak > transfer+overhead {
		t.Errorf("peak RSS %s exceeds the transfer memory the attack may take (%s: alice's share %s and bob's %s, within the budget %s) plus the stated overhead %s",
			mib(peak), mib(transfer), mib(share), mib(victimMemory), mib(budget), mib(overhead))
	}
}

// Attack 1: one SFTP session opens 100 uploads and writes 4 MiB to each (less than a part, so
// every byte stays in the gateway) and keeps them open. Before: every upload held a 5 MiB
// buffer, 100 of them ~540 MiB. Now: uploads beyond limits.uploads_per_session are refused and
// the rest stay within the user's share of the budget.
func TestManyUploadsInOneSession(t *testing.T) {
	g := startGateway(t, "")
	idle := g.rss(t)
	rss := g.sampleRSS()
	c := g.sftpClient(t, g.dial(t, "alice"))
	sent := map[string][]byte{}
	var files []*sftp.File
	var names []string
	refused, failed := 0, 0
	for i := range 100 {
		name := fmt.Sprintf("up%03d.bin", i)
		f, err := c.Create("/" + name)
		if err != nil {
			refused++
			continue
		}
		data := randomBytes(uint64(i), 4*MiB)
		sent[name] = data
		if _, err := f.Write(data); err != nil {
			failed++
			f.Close()
			continue
		}
		files = append(files, f)
		names = append(names, name)
	}
	t.Logf("alice opened %d uploads (%d refused), wrote 4 MiB to %d (%d writes failed); RSS %s idle, %s now",
		100-refused, refused, len(files), failed, mib(idle), mib(g.rss(t)))
	g.victim(t, 16*MiB, time.Minute)
	peak := rss.Stop()
	if _, err := c.ReadDir("/"); err != nil {
		t.Errorf("alice's session after the attack: %v", err)
	}
	var committed []string
	for i, f := range files {
		if err := f.Close(); err != nil {
			t.Errorf("closing %s: %v", names[i], err)
			continue
		}
		committed = append(committed, names[i])
	}
	landed := g.checkLanded(t, "alice/", sent, committed)
	t.Logf("attack 1 (100 uploads in one session): peak RSS %s during the attack (VmHWM %s, idle %s); %d uploads landed byte-exact",
		mib(peak), mib(g.peakRSS(t)), mib(idle), landed)
	checkRSS(t, peak, int64(defaults.TransferMemory), int64(defaults.PerUser()))
	if !measureOnly() && (len(files) != defaults.UploadsPerSession || refused != 100-defaults.UploadsPerSession) {
		t.Errorf("%d uploads open, %d refused; want %d open (limits.uploads_per_session)", len(files), refused, defaults.UploadsPerSession)
	}
}

// Attack 2: 10 uploads (two connections of 5) each send the whole reorder window (16 MiB)
// except its first packet, highest offsets first, and hold it there while bob transfers; then
// they send the first packets. Before: 10 full windows, ~165 MiB, then all 10 stored. Now:
// windows take at most half of the user's share; the writes that find no memory wait, holding
// back the attacker's sessions (pkg/sftp answers a session's requests in order), and the
// uploads that cannot be reassembled within sftp.write_wait_timeout fail as busy, leaving
// nothing. Whatever is stored is byte-exact and the attacker's connection still works.
func TestReorderWindowsFilled(t *testing.T) {
	const files, window, first = 10, 16 * MiB, 32 << 10
	g := startGateway(t, "sftp:\n  write_wait_timeout: 5s\n") // a key older gateways know too
	idle := g.rss(t)
	rss := g.sampleRSS()
	conns := []*ssh.Client{g.dial(t, "alice"), g.dial(t, "alice")}
	clients := []*sftp.Client{g.sftpClient(t, conns[0]), g.sftpClient(t, conns[1])}
	type upload struct {
		name string
		f    *sftp.File
		data []byte
		done chan error // the write ahead of the gap
	}
	var ups []*upload
	for i := range files { // every file open before any write can hold a session back
		u := &upload{name: fmt.Sprintf("win%02d.bin", i), data: randomBytes(uint64(100+i), window), done: make(chan error, 1)}
		f, err := clients[i%2].Create("/" + u.name)
		if err != nil {
			t.Fatal(err)
		}
		u.f = f
		ups = append(ups, u)
	}
	for _, u := range ups {
		go func() {
			_, err := u.f.WriteAt(u.data[first:], first) // all but the first packet, concurrently
			u.done <- err
		}()
	}
	// Let the windows fill: the old gateway buffers everything at once; the new one what its
	// memory allows.
	buffered := 0
	settle := time.After(3 * time.Second)
wait:
	for _, u := range ups {
		select {
		case err := <-u.done:
			u.done <- err
			buffered++
		case <-settle:
			break wait
		}
	}
	t.Logf("%d of %d windows accepted completely before the gaps were filled; RSS %s idle, %s now",
		buffered, files, mib(idle), mib(g.rss(t)))
	g.victim(t, 16*MiB, time.Minute)
	peak := rss.Stop()
	// Fill the gaps and close.
	sent := map[string][]byte{}
	var committed, failed []string
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, u := range ups {
		sent[u.name] = u.data
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := u.f.WriteAt(u.data[:first], 0)
			if werr := <-u.done; err == nil {
				err = werr
			}
			if cerr := u.f.Close(); err == nil {
				err = cerr
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed = append(failed, fmt.Sprintf("%s: %v", u.name, err))
				return
			}
			committed = append(committed, u.name)
		}()
	}
	wg.Wait()
	landed := g.checkLanded(t, "alice/", sent, committed)
	t.Logf("attack 2 (10 uploads filling the reorder window): peak RSS %s during the attack (VmHWM %s, idle %s); %d uploads landed byte-exact, %d failed %v",
		mib(peak), mib(g.peakRSS(t)), mib(idle), landed, len(failed), failed)
	checkRSS(t, peak, int64(defaults.TransferMemory), int64(defaults.PerUser()))
	// The attacker's connections are still served.
	for i, c := range clients {
		if _, err := c.ReadDir("/"); err != nil {
			t.Errorf("alice's session %d after the attack: %v", i, err)
		}
	}
	if !measureOnly() && landed != len(committed) {
		t.Errorf("%d uploads landed, %d committed", landed, len(committed))
	}
}

// Attack 3: 500 SSH channels on one connection, each asking for the SFTP subsystem. Before:
// all accepted, 6,536 goroutines. Now: channels beyond limits.channels_per_connection are
// rejected; the connection and everybody else go on.
func TestManyChannelsOneConnection(t *testing.T) {
	const channels = 500
	g := startGateway(t, "")
	idle := g.rss(t)
	before := g.metric(t, "go_goroutines")
	rss := g.sampleRSS()
	conn := g.dial(t, "alice")
	var held []ssh.Channel
	rejected := 0
	for range channels {
		ch, reqs, err := conn.OpenChannel("session", nil)
		if err != nil {
			var oce *ssh.OpenChannelError
			if !errors.As(err, &oce) {
				t.Fatalf("open channel: %v", err)
			}
			rejected++
			continue
		}
		go ssh.DiscardRequests(reqs)
		ok, err := ch.SendRequest("subsystem", true, ssh.Marshal(struct{ Name string }{"sftp"}))
		if err != nil || !ok {
			t.Fatalf("sftp subsystem refused on an accepted channel: %v", err)
		}
		held = append(held, ch)
	}
	time.Sleep(500 * time.Millisecond) // let every SFTP server start its goroutines
	during := g.metric(t, "go_goroutines")
	t.Logf("%d channels accepted, %d rejected; goroutines %.0f before, %.0f with the channels open", len(held), rejected, before, during)
	g.victim(t, 16*MiB, time.Minute)
	peak := rss.Stop()
	// The attacker's own connection still serves SFTP once it frees a channel.
	held[0].Close()
	var c *sftp.Client
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		if c, err = sftp.NewClient(conn); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no SFTP on alice's connection after freeing a channel: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	data := randomBytes(7, MiB)
	f, err := c.Create("/after.bin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	g.checkLanded(t, "alice/", map[string][]byte{"after.bin": data}, []string{"after.bin"})
	t.Logf("attack 3 (%d channels on one connection): peak RSS %s (VmHWM %s, idle %s); goroutines +%.0f",
		channels, mib(peak), mib(g.peakRSS(t)), mib(idle), during-before)
	checkRSS(t, peak, int64(defaults.TransferMemory), int64(defaults.PerUser()))
	if measureOnly() {
		return
	}
	if len(held) != defaults.ChannelsPerConnection || rejected != channels-defaults.ChannelsPerConnection {
		t.Errorf("%d channels accepted, %d rejected; want %d accepted (limits.channels_per_connection)", len(held), rejected, defaults.ChannelsPerConnection)
	}
	// Each accepted SFTP channel runs ~15 goroutines (pkg/sftp's workers and the channel's own).
	if grew := during - before; grew > float64(defaults.ChannelsPerConnection*25) {
		t.Errorf("goroutines grew by %.0f for %d channels", grew, defaults.ChannelsPerConnection)
	}
}

// The budget itself, not only the count limits: with uploads per session lifted and a small
// budget, 40 uploads of 4 MiB at once from one user get what the user's share holds; the others
// wait limits.transfer_memory_wait and fail as busy, leaving nothing; the session goes on;
// bob's transfer, in his own share, is not held up; RSS stays within the budget plus the
// overhead. (pkg/sftp answers a session's requests in order, so the busy failures come one
// wait after another: the attacker's session is what slows down.)
func TestBudgetHoldsOneUsersUploads(t *testing.T) {
	if measureOnly() {
		t.Skip("measure-only run: an older binary has no limits.* keys")
	}
	const budget, share = 96 * MiB, 48 * MiB
	g := startGateway(t, fmt.Sprintf(`limits:
  transfer_memory: %d
  transfer_memory_per_user: %d
  transfer_memory_wait: 500ms
  uploads_per_session: 100
`, budget, share))
	const uploads = 40
	idle := g.rss(t)
	rss := g.sampleRSS()
	c := g.sftpClient(t, g.dial(t, "alice"))
	sent := map[string][]byte{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var ok []*sftp.File
	var okNames []string
	busy := 0
	for i := range uploads {
		name := fmt.Sprintf("up%03d.bin", i)
		f, err := c.Create("/" + name)
		if err != nil {
			t.Fatalf("open %d of %d: %v", i, uploads, err)
		}
		data := randomBytes(uint64(i), 4*MiB)
		sent[name] = data
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := f.Write(data)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				busy++
				if cerr := f.Close(); cerr == nil {
					t.Errorf("%s: a failed upload committed at close", name)
				}
				return
			}
			ok = append(ok, f)
			okNames = append(okNames, name)
		}()
	}
	wg.Wait()
	t.Logf("%d uploads got memory, %d failed as busy; RSS %s idle, %s now; refusals %.0f",
		len(ok), busy, mib(idle), mib(g.rss(t)), g.metric(t, "ferry_transfer_memory_refusals_total"))
	g.victim(t, 16*MiB, time.Minute)
	peak := rss.Stop()
	if _, err := c.ReadDir("/"); err != nil {
		t.Errorf("alice's session after the refusals: %v", err)
	}
	for i, f := range ok {
		if err := f.Close(); err != nil {
			t.Errorf("%s: %v", okNames[i], err)
		}
	}
	landed := g.checkLanded(t, "alice/", sent, okNames)
	t.Logf("budget %s, share %s: peak RSS %s, %d uploads landed byte-exact", mib(budget), mib(share), mib(peak), landed)
	checkRSS(t, peak, budget, share)
	if want := int(share / (5 * MiB)); len(ok) != want || busy != uploads-want {
		t.Errorf("%d uploads went through and %d failed; want %d through (a 5 MiB part each in a %s share)", len(ok), busy, want, mib(share))
	}
}
