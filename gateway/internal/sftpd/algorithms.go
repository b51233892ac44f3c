package sftpd

import (
	"fmt"
	"slices"

	"golang.org/x/crypto/ssh"
)

// algorithms is what the server negotiates. x/crypto/ssh's defaults (v0.59.0) still accept
// diffie-hellman-group14-sha1, hmac-sha1 and hmac-sha1-96, and sign with ssh-rsa (SHA-1) for a
// client that asks, and verify users' ssh-rsa signatures: SHA-1 is broken for signatures
// (chosen-prefix collisions) and OpenSSH disabled ssh-rsa by default in 8.8. By default Ferry
// keeps to x/crypto's SupportedAlgorithms, the ones without known weaknesses, minus hmac-sha1
// (still "supported" there). Legacy restores what old devices need: the SHA-1 key exchanges and
// MACs, CBC ciphers, and ssh-rsa for host and user keys.
type algorithms struct {
	config     ssh.Config
	pubKeyAuth []string
	hostKeys   []ssh.Signer
}

func newAlgorithms(hostKeys []ssh.Signer, legacy bool) (algorithms, error) {
	sup, insecure := ssh.SupportedAlgorithms(), ssh.InsecureAlgorithms()
	a := algorithms{
		config: ssh.Config{
			KeyExchanges: sup.KeyExchanges,
			Ciphers:      sup.Ciphers,
			MACs:         slices.DeleteFunc(slices.Clone(sup.MACs), func(m string) bool { return m == ssh.HMACSHA1 }),
		},
		pubKeyAuth: sup.PublicKeyAuths,
	}
	if legacy {
		a.config.KeyExchanges = slices.Concat(sup.KeyExchanges, insecure.KeyExchanges)
		a.config.Ciphers = slices.Concat(sup.Ciphers, []string{ssh.InsecureCipherAES128CBC, ssh.InsecureCipherTripleDESCBC})
		a.config.MACs = slices.Concat(sup.MACs, insecure.MACs)
		a.pubKeyAuth = slices.Concat(sup.PublicKeyAuths, insecure.PublicKeyAuths)
		a.hostKeys = hostKeys
		return a, nil
	}
	for _, k := range hostKeys {
		k, err := withoutSHA1(k)
		if err != nil {
			return algorithms{}, err
		}
		a.hostKeys = append(a.hostKeys, k)
	}
	return a, nil
}

// withoutSHA1 makes an RSA host key sign with rsa-sha2-512 or rsa-sha2-256 only: the server
// offers a multi-algorithm signer's Algorithms() and nothing else. Other key types sign with
// one algorithm, which is not SHA-1.
func withoutSHA1(k ssh.Signer) (ssh.Signer, error) {
	if k.PublicKey().Type() != ssh.KeyAlgoRSA {
		return k, nil
	}
	as, ok := k.(ssh.AlgorithmSigner)
	if !ok {
		return nil, fmt.Errorf("sftpd: RSA host key %T cannot choose its signature algorithm", k)
	}
	return ssh.NewSignerWithAlgorithms(as, []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256})
}
