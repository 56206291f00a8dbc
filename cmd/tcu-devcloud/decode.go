package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/tcu-agent/tcu-agent/agent/record/wire"
)

// decode prints the compact batch in FILE (or stdin for "-") as the JSON
// envelope of PRODUCT.md; a JSON envelope is printed as it is.
func decode(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) != 1 {
		return errors.New("usage: tcu-devcloud decode FILE|-")
	}
	in := stdin
	if args[0] != "-" {
		f, err := os.Open(args[0])
		if err != nil {
			return fmt.Errorf("decode: %w", err)
		}
		defer func() { _ = f.Close() }()
		in = f
	}
	b, err := io.ReadAll(io.LimitReader(in, wire.MaxDecoded+1))
	if err != nil {
		return fmt.Errorf("decode: read: %w", err)
	}
	if len(b) > wire.MaxDecoded {
		return fmt.Errorf("decode: input larger than %d bytes", wire.MaxDecoded)
	}
	if !wire.IsCompact(b) {
		if len(b) > 0 && b[0] == '{' {
			_, err = stdout.Write(b)
			return err
		}
		return errors.New("decode: neither a compact batch nor a JSON envelope")
	}
	js, err := wire.ToJSON(b)
	if err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	_, err = stdout.Write(append(js, '\n'))
	return err
}
