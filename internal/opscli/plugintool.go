package opscli

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/rideshare-dbaas/rideshare/internal/pluginsig"
)

// pluginToolCmd is the offline signing tool: no orchestrator involved.
func pluginToolCmd(out io.Writer) *cobra.Command {
	var keyPath string
	root := &cobra.Command{
		Use:   "plugin",
		Short: "Sign plugin manifests (ed25519): keygen, pubkey, sign, verify (docs/plugins.md)",
	}
	root.PersistentFlags().StringVar(&keyPath, "key", pluginsig.DefaultKeyPath(), "the private signing key (PEM, mode 0600)")
	keygen := &cobra.Command{
		Use:   "keygen",
		Short: "Make a signing key at --key (refuses to overwrite one) and print its public key",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			pub, err := pluginsig.GenerateKey(keyPath)
			if err != nil {
				return exitf(ExitFailed, "%v", err)
			}
			fmt.Fprintln(out, pluginsig.EncodePublicKey(pub))
			return nil
		},
	}
	var pemOut bool
	pubkey := &cobra.Command{
		Use:   "pubkey",
		Short: "Print the public key of --key (base64, or PEM with --pem) for the workers' --plugin-pubkey or $" + pluginsig.EnvPublicKey,
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			priv, err := pluginsig.ReadPrivateKey(keyPath)
			if err != nil {
				return exitf(ExitFailed, "%v", err)
			}
			pub := priv.Public().(ed25519.PublicKey)
			if pemOut {
				_, err = out.Write(pluginsig.PublicKeyPEM(pub))
				return err
			}
			fmt.Fprintln(out, pluginsig.EncodePublicKey(pub))
			return nil
		},
	}
	pubkey.Flags().BoolVar(&pemOut, "pem", false, "print PEM instead of base64")
	sign := &cobra.Command{
		Use:   "sign MANIFEST",
		Short: "Write MANIFEST.sig: the signature of the manifest's exact bytes (rename the manifest into place after)",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			if err := pluginsig.SignFile(keyPath, args[0]); err != nil {
				return exitf(ExitFailed, "%v", err)
			}
			fmt.Fprintf(out, "signed %s: %s\n", args[0], pluginsig.SigPath(args[0]))
			return nil
		},
	}
	var pubPath string
	verify := &cobra.Command{
		Use:   "verify MANIFEST",
		Short: "Check MANIFEST.sig against --pubkey (default: the public key of --key); exit 5 when it does not verify",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			pub, _, err := pluginsig.LoadPublicKey(pubPath)
			if err != nil {
				return exitf(ExitUsage, "%v", err)
			}
			if pub == nil {
				priv, err := pluginsig.ReadPrivateKey(keyPath)
				if err != nil {
					return exitf(ExitUsage, "no --pubkey, and %v", err)
				}
				pub = priv.Public().(ed25519.PublicKey)
			}
			manifest, err := os.ReadFile(args[0])
			if err != nil {
				return exitf(ExitFailed, "%v", err)
			}
			sig, err := os.ReadFile(pluginsig.SigPath(args[0]))
			if err != nil {
				return exitf(ExitRefused, "%v", err)
			}
			if err := pluginsig.Verify(pub, manifest, sig); err != nil {
				return exitf(ExitRefused, "%s: %v", args[0], err)
			}
			fmt.Fprintf(out, "%s: signature OK\n", args[0])
			return nil
		},
	}
	verify.Flags().StringVar(&pubPath, "pubkey", "", "the public key file (default $"+pluginsig.EnvPublicKeyFile+", $"+pluginsig.EnvPublicKey+", else the public key of --key)")
	root.AddCommand(keygen, pubkey, sign, verify)
	return root
}

// writeJSONLine writes v as one line (watch --json).
func writeJSONLine(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}
