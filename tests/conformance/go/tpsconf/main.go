// Command tpsconf is the grpc-go side of the conformance suite: it calls a
// coprocess.Dispatcher server the way the Tyk gateway (a grpc-go client) does.
//
// It needs no generated coprocess bindings: Dispatch and DispatchEvent carry the
// fixture bytes unchanged through a pass-through codec (grpc.ForceCodec), and the
// health and reflection clients come with the grpc module itself.
//
// Modes:
//
//	old            dial like gateways < 5.8.3: grpc.Dial("") + a custom dialer that calls
//	               net.Dial(scheme, address) for tcp://host:port and unix:///path
//	               (the empty target makes grpc-go send an empty :authority)
//	old-authority  the same plus grpc.WithAuthority("localhost"), i.e. grpc_authority set
//	new            dial like gateways >= 5.8.3: target "host:port" or "unix:///path"
//	probe          no server under test: a raw HTTP/2 listener records the :authority
//	               that each dial mode above sends
//
// Output: one "PASS name" or "FAIL name: detail" line per check, "# ..." notes, and a
// closing "N passed, M failed" line; exit status 1 if any check failed.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/ioutil"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflpb "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
)

const (
	dispatchMethod      = "/coprocess.Dispatcher/Dispatch"
	dispatchEventMethod = "/coprocess.Dispatcher/DispatchEvent"
	concurrentCalls     = 50
)

// rawCodec passes bytes through unchanged: the request is a *[]byte or []byte,
// the reply is unmarshalled into a *[]byte.
type rawCodec struct{}

func (rawCodec) Marshal(v interface{}) ([]byte, error) {
	switch b := v.(type) {
	case []byte:
		return b, nil
	case *[]byte:
		return *b, nil
	}
	return nil, fmt.Errorf("rawCodec: cannot marshal %T", v)
}

func (rawCodec) Unmarshal(data []byte, v interface{}) error {
	p, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("rawCodec: cannot unmarshal into %T", v)
	}
	*p = append([]byte(nil), data...)
	return nil
}

func (rawCodec) Name() string { return "proto" } // keeps content-type application/grpc(+proto)

type fixture struct {
	name  string
	data  []byte
	event bool
}

type results struct {
	mu             sync.Mutex
	passed, failed int
}

func (r *results) pass(name, note string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.passed++
	if note != "" {
		fmt.Printf("PASS %s  (%s)\n", name, note)
	} else {
		fmt.Printf("PASS %s\n", name)
	}
}

func (r *results) fail(name string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed++
	fmt.Printf("FAIL %s: %s\n", name, strings.ReplaceAll(err.Error(), "\n", " | "))
}

func (r *results) check(name string, fn func() (string, error)) bool {
	note, err := fn()
	if err != nil {
		r.fail(name, err)
		return false
	}
	r.pass(name, note)
	return true
}

var callTimeout = 20 * time.Second

// callCtx bounds a call without sending a grpc-timeout header (Tyk sets no deadline):
// the context is cancelled by a timer instead.
func callCtx() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	t := time.AfterFunc(callTimeout, cancel)
	return ctx, func() { t.Stop(); cancel() }
}

func loadFixtures(dir string) ([]fixture, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.bin"))
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var out []fixture
	for _, p := range names {
		b, err := ioutil.ReadFile(p)
		if err != nil {
			return nil, err
		}
		n := strings.TrimSuffix(filepath.Base(p), ".bin")
		out = append(out, fixture{name: n, data: b, event: strings.HasPrefix(n, "event_")})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no *.bin fixtures in %s", dir)
	}
	return out, nil
}

// oldDialer reproduces the dialer of gateways < 5.8.3: the configured URL's scheme is the
// network, its host (tcp) or path (unix) the address; the address grpc-go passes is ignored.
func oldDialer(serverURL string) func(context.Context, string) (net.Conn, error) {
	return func(ctx context.Context, _ string) (net.Conn, error) {
		u, err := url.Parse(serverURL)
		if err != nil {
			return nil, err
		}
		addr := u.Host
		if u.Scheme == "unix" {
			addr = u.Path
		}
		var d net.Dialer
		return d.DialContext(ctx, u.Scheme, addr)
	}
}

// dial returns a ClientConn for one mode/transport. tcpAddr is "127.0.0.1:PORT",
// unixPath an absolute socket path.
func dial(mode, transport, tcpAddr, unixPath string) (*grpc.ClientConn, error) {
	serverURL := "tcp://" + tcpAddr
	if transport == "unix" {
		serverURL = "unix://" + unixPath
	}
	switch mode {
	case "old", "old-authority":
		opts := []grpc.DialOption{grpc.WithInsecure(), grpc.WithContextDialer(oldDialer(serverURL))}
		if mode == "old-authority" {
			opts = append(opts, grpc.WithAuthority("localhost"))
		}
		return grpc.Dial("", opts...)
	case "new":
		// grpc-go 1.33 has no "unix" resolver, but Dial falls back to passthrough, its
		// default dialer understands unix:///path and the default authority is "localhost",
		// which is what the newer gateways' grpc-go (unix resolver) sends as well.
		target := tcpAddr
		if transport == "unix" {
			target = "unix://" + unixPath
		}
		return grpc.Dial(target, grpc.WithInsecure())
	}
	return nil, fmt.Errorf("unknown mode %q", mode)
}

func dispatchRaw(cc *grpc.ClientConn, method string, req []byte) ([]byte, error) {
	ctx, cancel := callCtx()
	defer cancel()
	var reply []byte
	err := cc.Invoke(ctx, method, req, &reply, grpc.ForceCodec(rawCodec{}))
	return reply, err
}

func firstDiff(a, b []byte) int {
	n := len(a)
	if len(b) < n {
		n = len(b)
	}
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

func echo(cc *grpc.ClientConn, data []byte) error {
	reply, err := dispatchRaw(cc, dispatchMethod, data)
	if err != nil {
		return err
	}
	if !bytes.Equal(reply, data) {
		return fmt.Errorf("reply differs: sent %d bytes, got %d, first difference at byte %d",
			len(data), len(reply), firstDiff(reply, data))
	}
	return nil
}

func runServerChecks(r *results, mode, tcpAddr, unixPath string, fixtures []fixture) {
	for _, transport := range []string{"tcp", "unix"} {
		p := fmt.Sprintf("go/%s/%s/", mode, transport)
		cc, err := dial(mode, transport, tcpAddr, unixPath)
		if err != nil {
			r.fail(p+"dial", err)
			continue
		}
		ok := r.check(p+"probe: Dispatch of an empty Object", func() (string, error) {
			return "", echo(cc, []byte{})
		})
		if !ok {
			fmt.Printf("# %sremaining checks skipped: the transport does not work\n", p)
			cc.Close()
			continue
		}
		for _, svc := range []string{"", "coprocess.Dispatcher"} {
			svc := svc
			r.check(fmt.Sprintf("%shealth Check %q -> SERVING", p, svc), func() (string, error) {
				ctx, cancel := callCtx()
				defer cancel()
				resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
				if err != nil {
					return "", err
				}
				if resp.Status != healthpb.HealthCheckResponse_SERVING {
					return "", fmt.Errorf("status %v", resp.Status)
				}
				return "", nil
			})
		}
		r.check(p+"reflection v1alpha list services", func() (string, error) {
			ctx, cancel := callCtx()
			defer cancel()
			st, err := reflpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
			if err != nil {
				return "", err
			}
			if err := st.Send(&reflpb.ServerReflectionRequest{
				MessageRequest: &reflpb.ServerReflectionRequest_ListServices{ListServices: "*"}}); err != nil {
				return "", err
			}
			resp, err := st.Recv()
			if err != nil {
				return "", err
			}
			st.CloseSend()
			got := map[string]bool{}
			var names []string
			for _, s := range resp.GetListServicesResponse().GetService() {
				got[s.Name] = true
				names = append(names, s.Name)
			}
			for _, want := range []string{"coprocess.Dispatcher", "grpc.health.v1.Health"} {
				if !got[want] {
					return "", fmt.Errorf("%s not listed (got %v)", want, names)
				}
			}
			return "", nil
		})
		var dispatchable [][]byte
		for _, fx := range fixtures {
			fx := fx
			if fx.event {
				r.check(p+"DispatchEvent "+fx.name, func() (string, error) {
					reply, err := dispatchRaw(cc, dispatchEventMethod, fx.data)
					if err != nil {
						return "", err
					}
					if len(reply) != 0 {
						return "", fmt.Errorf("EventReply should be empty, got %d bytes", len(reply))
					}
					return "", nil
				})
				continue
			}
			dispatchable = append(dispatchable, fx.data)
			r.check(fmt.Sprintf("%sDispatch %s (%d B): byte-identical echo", p, fx.name, len(fx.data)),
				func() (string, error) { return "", echo(cc, fx.data) })
		}
		r.check(fmt.Sprintf("%s%d concurrent Dispatches on one connection", p, concurrentCalls), func() (string, error) {
			var wg sync.WaitGroup
			errs := make([]error, concurrentCalls)
			t0 := time.Now()
			for i := 0; i < concurrentCalls; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					errs[i] = echo(cc, dispatchable[i%len(dispatchable)])
				}(i)
			}
			wg.Wait()
			var bad []string
			for i, e := range errs {
				if e != nil {
					bad = append(bad, fmt.Sprintf("call %d: %v", i, e))
				}
			}
			if len(bad) > 0 {
				return "", fmt.Errorf("%d of %d failed; %s", len(bad), concurrentCalls, bad[0])
			}
			return fmt.Sprintf("%d ms", time.Since(t0).Milliseconds()), nil
		})
		cc.Close()
	}
}

// ---------------------------------------------------------------------------- probe

type seenHeaders struct {
	present   bool
	authority string
	path      string
}

// h2Probe accepts one HTTP/2 connection and returns the pseudo-headers of the first
// request (HEADERS + CONTINUATION frames, HPACK-decoded). It never answers the request.
func h2Probe(ln net.Listener, deadline time.Time) (seenHeaders, error) {
	var seen seenHeaders
	if tl, ok := ln.(interface{ SetDeadline(time.Time) error }); ok {
		tl.SetDeadline(deadline)
	}
	conn, err := ln.Accept()
	if err != nil {
		return seen, err
	}
	defer conn.Close()
	conn.SetDeadline(deadline)
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(conn, preface); err != nil {
		return seen, fmt.Errorf("reading preface: %v", err)
	}
	if string(preface) != http2.ClientPreface {
		return seen, fmt.Errorf("bad client preface %q", preface)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		return seen, err
	}
	dec := hpack.NewDecoder(4096, func(f hpack.HeaderField) {
		switch f.Name {
		case ":authority":
			seen.present = true
			seen.authority = f.Value
		case ":path":
			seen.path = f.Value
		}
	})
	var block []byte
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return seen, fmt.Errorf("reading frames: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				if err := fr.WriteSettingsAck(); err != nil {
					return seen, err
				}
			}
		case *http2.HeadersFrame:
			block = append(block, f.HeaderBlockFragment()...)
			if f.HeadersEnded() {
				_, err := dec.Write(block)
				return seen, err
			}
		case *http2.ContinuationFrame:
			block = append(block, f.HeaderBlockFragment()...)
			if f.HeadersEnded() {
				_, err := dec.Write(block)
				return seen, err
			}
		}
	}
}

func runProbe(r *results) {
	tmp, err := ioutil.TempDir("", "tpsconf-probe-")
	if err != nil {
		r.fail("go/probe/setup", err)
		return
	}
	defer os.RemoveAll(tmp)
	type tc struct {
		mode, transport string
		want            func(tcpAddr string) string
	}
	cases := []tc{
		{"old", "tcp", func(string) string { return "" }},
		{"old", "unix", func(string) string { return "" }},
		{"old-authority", "tcp", func(string) string { return "localhost" }},
		{"old-authority", "unix", func(string) string { return "localhost" }},
		{"new", "tcp", func(a string) string { return a }},
		{"new", "unix", func(string) string { return "localhost" }},
	}
	for i, c := range cases {
		c := c
		name := fmt.Sprintf("go/probe/%s/%s: :authority sent", c.mode, c.transport)
		r.check(name, func() (string, error) {
			var ln net.Listener
			var err error
			sock := filepath.Join(tmp, fmt.Sprintf("p%d.sock", i))
			if c.transport == "tcp" {
				ln, err = net.Listen("tcp", "127.0.0.1:0")
			} else {
				ln, err = net.Listen("unix", sock)
			}
			if err != nil {
				return "", err
			}
			defer ln.Close()
			tcpAddr := ln.Addr().String()
			cc, err := dial(c.mode, c.transport, tcpAddr, sock)
			if err != nil {
				return "", err
			}
			defer cc.Close()
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				var reply []byte
				cc.Invoke(ctx, dispatchMethod, []byte{}, &reply, grpc.ForceCodec(rawCodec{}))
			}()
			seen, err := h2Probe(ln, time.Now().Add(5*time.Second))
			if err != nil {
				return "", err
			}
			if seen.path != dispatchMethod {
				return "", fmt.Errorf(":path %q", seen.path)
			}
			if !seen.present {
				return "", errors.New(":authority absent")
			}
			want := c.want(tcpAddr)
			if seen.authority != want {
				return "", fmt.Errorf(":authority %q, expected %q", seen.authority, want)
			}
			return fmt.Sprintf("%q", seen.authority), nil
		})
	}
}

func main() {
	mode := flag.String("mode", "", "probe | old | old-authority | new")
	tcpAddr := flag.String("tcp", "", "server TCP address host:port")
	unixPath := flag.String("unix", "", "server Unix socket absolute path")
	fixturesDir := flag.String("fixtures", "", "directory with the *.bin wire fixtures")
	timeout := flag.Duration("timeout", callTimeout, "per-call timeout")
	flag.Parse()
	callTimeout = *timeout
	r := &results{}
	fmt.Printf("# grpc-go client, mode %s\n", *mode)
	switch *mode {
	case "probe":
		runProbe(r)
	case "old", "old-authority", "new":
		if *tcpAddr == "" || *unixPath == "" || *fixturesDir == "" {
			fmt.Fprintln(os.Stderr, "need -tcp, -unix and -fixtures")
			os.Exit(2)
		}
		fixtures, err := loadFixtures(*fixturesDir)
		if err != nil {
			r.fail("go/"+*mode+"/fixtures", err)
			break
		}
		runServerChecks(r, *mode, *tcpAddr, *unixPath, fixtures)
	default:
		fmt.Fprintln(os.Stderr, "unknown -mode; want probe, old, old-authority or new")
		os.Exit(2)
	}
	fmt.Printf("%d passed, %d failed\n", r.passed, r.failed)
	if r.failed > 0 {
		os.Exit(1)
	}
}
