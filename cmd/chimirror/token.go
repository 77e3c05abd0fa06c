package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"flag"
	"fmt"
	"io"

	"github.com/chimirror/chimirror/internal/cli"
)

// tokenBytes is the randomness of a token chimirror makes: 256 bits,
// twice the 128 every token must have (see web.MinTokenBits).
const tokenBytes = 32

// cmdToken makes a random token for a tenant or an operator and prints it
// with the SHA-256 the config holds. chimirror never keeps the token: it
// is shown once.
func cmdToken(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	label := fs.String("label", "", "an operator's label: print the admin_tokens_sha256 entry as \"LABEL:HASH\"")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: chimirror token [--label LABEL]\n\n"+
			"Prints a new random token (256 bits) and its SHA-256, for a [[tenant]]'s\n"+
			"token_sha256 or for admin_tokens_sha256. The token is shown only this once.\n\n")
		fs.PrintDefaults()
	}
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return cli.ExitCode(2)
	}
	var raw [tokenBytes]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return fmt.Errorf("make a token: %w", err)
	}
	tok := base64.RawURLEncoding.EncodeToString(raw[:])
	sum := sha256.Sum256([]byte(tok))
	entry := fmt.Sprintf("token_sha256 = %q        # in the tenant's [[tenant]]", hex.EncodeToString(sum[:]))
	if *label != "" {
		entry = fmt.Sprintf("admin_tokens_sha256 = [%q]", *label+":"+hex.EncodeToString(sum[:]))
	}
	_, err := fmt.Fprintf(stdout, "token: %s\n%s\n", tok, entry)
	return err
}
