// Command sopsd is promote's persistent sops decryptor: one process per key environment that
// decrypts many documents with sops' own library (github.com/getsops/sops/v3/decrypt, which
// unwraps the data key, decrypts every value and checks the MAC), instead of one `sops decrypt`
// process per Secret (each costs 15-21 ms of CPU to start the sops binary; the decryption itself
// takes microseconds).
//
// Protocol, over stdin/stdout, one request at a time:
//
//	request:  "<input-format> <output-format> <length>\n" then <length> bytes of document
//	answer:   "ok <length>\n" then <length> bytes of plaintext
//	     or:  "err <code> <notes>\n"
//
// Formats are "yaml" or "json". <code> is the exit code the sops binary gives for the same
// failure (cmd/sops/codes: 1 not a sops document, 25 a value does not decrypt, 51 MAC mismatch,
// 52 MAC cannot be decrypted, 128 no key unwraps the data key), so promote/secrets/sops.py
// explains both backends the same way. <notes> is "-" or a comma-separated list from a closed
// set (vault-unreachable, vault-denied, gpg-no-key, age-no-identity, no-metadata). Go error text
// is never written anywhere: it can quote a value ("Input string %s does not match sops' data
// format"). Plaintext only travels on stdout. Nothing goes to stderr except start-up failures
// and malformed requests, which carry no document content.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/getsops/sops/v3"
	"github.com/getsops/sops/v3/cmd/sops/common"
	"github.com/getsops/sops/v3/cmd/sops/formats"
	"github.com/getsops/sops/v3/config"
	"github.com/getsops/sops/v3/decrypt"
	"github.com/getsops/sops/v3/logging"
	"github.com/getsops/sops/v3/version"
	"github.com/sirupsen/logrus"
)

// maxDocument bounds one request: a Secret is at most 1 MiB; its encrypted form is larger.
const maxDocument = 16 << 20

// sops' exit codes (cmd/sops/codes/codes.go).
const (
	exitGeneric        = 1
	exitDecryptingTree = 25
	exitMacMismatch    = 51
	exitMacNotFound    = 52
	exitNoFileKey      = 128
)

var notes = []struct {
	name    string
	pattern *regexp.Regexp
}{
	{"vault-unreachable", regexp.MustCompile(`(?i)connection refused|no such host|i/o timeout|dial tcp`)},
	{"vault-denied", regexp.MustCompile(`(?i)permission denied|missing client token|invalid token|code: 403`)},
	{"gpg-no-key", regexp.MustCompile(`(?i)No secret key|secret key not available`)},
	{"age-no-identity", regexp.MustCompile(`(?i)did not find keys|failed to load age identities|no identity matched|identity did not match`)},
}

func formatOf(name string) (formats.Format, bool) {
	switch name {
	case "yaml":
		return formats.Yaml, true
	case "json":
		return formats.Json, true
	}
	return 0, false
}

// classify maps a decrypt.DataWithFormat error to sops' exit code and safe notes. The error's
// text is read here and goes no further.
func classify(err error) (int, []string) {
	text := err.Error()
	if userErr, ok := err.(sops.UserError); ok {
		text += "\n" + userErr.UserError()
	}
	switch {
	case errors.Is(err, sops.MetadataNotFound):
		return exitGeneric, []string{"no-metadata"}
	case strings.HasPrefix(text, "Error getting data key"):
		var found []string
		for _, n := range notes {
			if n.pattern.MatchString(text) {
				found = append(found, n.name)
			}
		}
		return exitNoFileKey, found
	case strings.HasPrefix(text, "Failed to decrypt original mac"):
		return exitMacNotFound, nil
	case strings.HasPrefix(text, "Failed to verify data integrity"):
		return exitMacMismatch, nil
	case strings.HasPrefix(text, "Error walking tree"), strings.HasPrefix(text, "Could not decrypt value"):
		return exitDecryptingTree, nil
	}
	return exitGeneric, nil
}

// convert re-emits plaintext of one format in another, as `sops decrypt --output-type` does.
func convert(plain []byte, in, out formats.Format) ([]byte, error) {
	if in == out {
		return plain, nil
	}
	stores := config.NewStoresConfig()
	branches, err := common.StoreForFormat(in, stores).LoadPlainFile(plain)
	if err != nil {
		return nil, err
	}
	return common.StoreForFormat(out, stores).EmitPlainFile(branches)
}

// errPanicked stands for a panic inside sops' library: answered as a generic failure (exit 1),
// the process stays up, and the panic's value (which could hold document text) goes nowhere.
var errPanicked = errors.New("panic while decrypting")

func decryptOne(document []byte, in, out formats.Format) (plain []byte, err error) {
	defer func() {
		if recover() != nil {
			plain, err = nil, errPanicked
		}
	}()
	plain, err = decrypt.DataWithFormat(document, in)
	if err == nil {
		plain, err = convert(plain, in, out)
	}
	return plain, err
}

func answer(w *bufio.Writer, plain []byte, err error) error {
	if err != nil {
		code, found := classify(err)
		list := "-"
		if len(found) > 0 {
			list = strings.Join(found, ",")
		}
		fmt.Fprintf(w, "err %d %s\n", code, list)
	} else {
		fmt.Fprintf(w, "ok %d\n", len(plain))
		w.Write(plain)
	}
	return w.Flush()
}

func serve(r *bufio.Reader, w *bufio.Writer) error {
	for {
		header, err := r.ReadString('\n')
		if err == io.EOF && header == "" {
			return nil // the client closed the pipe: done
		}
		if err != nil {
			return fmt.Errorf("reading a request header: %w", err)
		}
		fields := strings.Fields(header)
		if len(fields) != 3 {
			return errors.New("malformed request header")
		}
		in, okIn := formatOf(fields[0])
		out, okOut := formatOf(fields[1])
		size, err := strconv.Atoi(fields[2])
		if !okIn || !okOut || err != nil || size < 0 || size > maxDocument {
			return errors.New("malformed request header (format or length)")
		}
		document := make([]byte, size)
		if _, err := io.ReadFull(r, document); err != nil {
			return fmt.Errorf("reading a request body: %w", err)
		}
		plain, err := decryptOne(document, in, out)
		clear(document)
		if err := answer(w, plain, err); err != nil {
			return err
		}
		clear(plain)
	}
}

func main() {
	if len(os.Args) == 2 && os.Args[1] == "--version" {
		fmt.Println("sopsd (sops " + version.Version + ")")
		return
	}
	// sops logs through logrus to stderr; nothing of it may leave this process.
	logging.SetLevel(logrus.PanicLevel)
	logrus.SetOutput(io.Discard)
	r := bufio.NewReaderSize(os.Stdin, 64<<10)
	w := bufio.NewWriterSize(os.Stdout, 64<<10)
	if err := serve(r, w); err != nil {
		fmt.Fprintf(os.Stderr, "sopsd: %v\n", err)
		os.Exit(2)
	}
}
