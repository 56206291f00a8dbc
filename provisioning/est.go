package provisioning

import (
	"context"
	"crypto"
)

func (p *Provisioner) attemptEST(ctx context.Context, st *state) (*Identity, error) {
	return nil, &permanentError{ErrNoIdentity}
}

func (p *Provisioner) reenrollEST(ctx context.Context, old *Identity, key crypto.Signer) ([]byte, error) {
	return nil, ErrNoIdentity
}
