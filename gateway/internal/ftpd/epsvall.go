package ftpd

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	_ "unsafe" // go:linkname, see below

	ftpserver "github.com/fclairamb/ftpserverlib"
)

// EPSV ALL (RFC 2428 section 3): once a client sends it, the server "MUST reject all data
// connection setup commands other than EPSV (i.e., EPRT, PORT, PASV, et al.)"; firewalls and
// NATs rely on it to stop inspecting the control connection. The RFC names no reply code;
// Ferry answers EPSV ALL with 200 and refuses PASV, PORT and EPRT afterwards with
// "501 <command> not allowed after EPSV ALL", as BSD ftpd (the RFC authors' own), wu-ftpd and
// pyftpdlib do. LPSV and LPRT are not implemented at all (502).
//
// ftpserverlib v0.30.0 treats "EPSV ALL" as a plain EPSV and offers no hook that could change
// that: no driver callback sees a command's argument or runs before PASV/PORT/EPRT reply, and
// under FTPS the control stream is encrypted inside the library, below which Ferry's connection
// wrapper sits. The options were a vendored fork (4,200 lines to carry and re-patch at every
// upgrade), terminating control-channel TLS in Ferry to read commands in clear (reworking the
// security-critical part to change four commands), or this: the library's command table is
// one process-wide map of exported CommandDescription values; Ferry wraps the handlers of
// EPSV, PASV, PORT and EPRT in it, once per process, before any server serves. A wrapped
// handler looks up Ferry's session on the client (ClientContext.Extra) and either runs the
// library's handler or has the library answer through its public SITE extension (clientDriver.Site,
// with a per-server secret prefix no client can guess), so replies stay in command order and
// go through the library's writer. Clients of other drivers (none in Ferry) are unaffected.
//
// The link to the unexported table fails the build, not the run, if a library upgrade renames
// it; a changed handler signature makes New fail with a clear error; TestEPSVAll pins the
// behaviour.
//
//go:linkname libCommands github.com/fclairamb/ftpserverlib.commandsMap
var libCommands map[string]*ftpserver.CommandDescription

// The library's command table is process-wide, so is its patching: once, before the first
// server is created (New waits for it), never after.
var (
	epsvAllOnce sync.Once
	epsvAllErr  error
)

// dataSetupCommands are the commands EPSV ALL concerns.
var dataSetupCommands = []string{"EPSV", "PASV", "PORT", "EPRT"}

// dataTransferCommands move data over the data connection. When TLS is required and the
// client has not sent PROT P, they are refused before the library runs them: the library
// would ask the driver first and answer a refusal of LIST or NLST with 450, which lftp and
// others take as temporary and retry forever (see session.dataTransfer).
var dataTransferCommands = []string{"LIST", "NLST", "MLSD", "RETR", "STOR", "APPE"}

// installEPSVAll wraps the data-connection setup and transfer commands' handlers (once per
// process).
func installEPSVAll() error {
	epsvAllOnce.Do(func() {
		epsvAllErr = errors.Join(
			wrapCommands(libCommands, dataSetupCommands, (*session).dataSetup),
			wrapCommands(libCommands, dataTransferCommands, (*session).dataTransfer))
	})
	return epsvAllErr
}

// wrapCommands makes decide run before the library's handler of each command in names; an
// answer other than "" is sent through clientDriver.Site instead of running the handler.
func wrapCommands(cmds map[string]*ftpserver.CommandDescription, names []string, decide func(s *session, cmd, param string) string) error {
	site := cmds["SITE"]
	if site == nil || site.Fn == nil {
		return errors.New("ftpd: ftpserverlib has no SITE handler to answer EPSV ALL with")
	}
	siteFn := reflect.ValueOf(site.Fn)
	ccType := reflect.TypeFor[ftpserver.ClientContext]()
	errType := reflect.TypeFor[error]()
	for _, name := range names {
		desc := cmds[name]
		if desc == nil || desc.Fn == nil {
			return fmt.Errorf("ftpd: ftpserverlib has no %s handler", name)
		}
		orig := reflect.ValueOf(desc.Fn)
		ft := orig.Type()
		if ft != siteFn.Type() || ft.NumIn() != 2 || !ft.In(0).Implements(ccType) ||
			ft.In(1).Kind() != reflect.String || ft.NumOut() != 1 || ft.Out(0) != errType {
			return fmt.Errorf("ftpd: ftpserverlib's %s handler has an unexpected type %s", name, ft)
		}
		wrapped := reflect.MakeFunc(ft, func(args []reflect.Value) []reflect.Value {
			cc, _ := args[0].Interface().(ftpserver.ClientContext)
			var s *session
			if cc != nil {
				s, _ = cc.Extra().(*session)
			}
			if s != nil {
				if answer := decide(s, name, args[1].String()); answer != "" {
					return siteFn.Call([]reflect.Value{args[0], reflect.ValueOf(s.srv.siteKey + " " + answer)})
				}
			}
			return orig.Call(args)
		})
		reflect.ValueOf(desc).Elem().FieldByName("Fn").Set(wrapped)
	}
	return nil
}

// Answers a wrapped handler asks clientDriver.Site for.
const (
	answerEPSVAll = "epsv-all"
	answerRefuse  = "refuse " // + the command
	answerDataTLS = "data-tls"
	answerNoPort  = "no-passive-port"
)

// dataSetup decides a data-connection setup command: "" lets the library handle it.
func (s *session) dataSetup(cmd, param string) string {
	if cmd == "EPSV" {
		if strings.EqualFold(strings.TrimSpace(param), "ALL") {
			s.epsvAll.Store(true)
			s.log.Debug("EPSV ALL: only EPSV from now on")
			return answerEPSVAll
		}
		return s.reservePassive(cmd)
	}
	if s.epsvAll.Load() {
		s.log.Info("refused after EPSV ALL", "command", cmd)
		return answerRefuse + cmd
	}
	if cmd == "PASV" {
		return s.reservePassive(cmd)
	}
	return ""
}

// reservePassive takes a passive port for the PASV or EPSV the library is about to handle
// (see passive.go), or answers 425 when none is free.
func (s *session) reservePassive(cmd string) string {
	var err error
	switch {
	case s.srv.passive != nil:
		err = s.srv.passive.reserve(s.bindIP)
	case s.srv.handoff != nil && !s.srv.handoff.available():
		err = errNoPassivePort
	}
	if err != nil {
		s.log.Warn("passive data connection refused: no free port", "command", cmd, "err", err)
		return answerNoPort
	}
	return ""
}

// dataTransfer refuses a transfer over a clear data connection when TLS is required.
func (s *session) dataTransfer(cmd, _ string) string {
	if s.srv.cfg.TLS.Mode == TLSRequired && !s.cc.HasTLSForTransfers() {
		s.log.Info("clear data connection refused: TLS required", "command", cmd)
		return answerDataTLS
	}
	return ""
}

// Site implements ftpserver.ClientDriverExtensionSite for the answers above only; every SITE
// command a client sends goes on to the library's own handling.
func (d *clientDriver) Site(param string) *ftpserver.AnswerCommand {
	answer, ok := strings.CutPrefix(param, d.s.srv.siteKey+" ")
	if !ok {
		return nil
	}
	switch {
	case answer == answerEPSVAll:
		return &ftpserver.AnswerCommand{Code: ftpserver.StatusOK, Message: "EPSV ALL command successful."}
	case answer == answerNoPort:
		return &ftpserver.AnswerCommand{Code: ftpserver.StatusCannotOpenDataConnection,
			Message: "Can't open data connection: every passive port is in use, try again later."}
	case answer == answerDataTLS:
		// RFC 4217 section 9: 521, "data connection cannot be opened with this PROT setting".
		return &ftpserver.AnswerCommand{Code: 521, Message: "Data connection cannot be opened with this PROT setting: TLS is required, send PROT P"}
	case strings.HasPrefix(answer, answerRefuse):
		cmd := strings.TrimPrefix(answer, answerRefuse)
		return &ftpserver.AnswerCommand{Code: ftpserver.StatusSyntaxErrorParameters, Message: cmd + " not allowed after EPSV ALL."}
	}
	return nil
}
