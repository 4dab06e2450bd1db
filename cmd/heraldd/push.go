package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/heraldhq/herald/push"
)

// PushConfig is where heraldd wakes devices through: each service is on when its
// credentials are given.
type PushConfig struct {
	// VAPIDKeyFile holds the Web Push VAPID private key (PEM, P-256); VAPIDSubject is
	// the operator's contact (mailto: or https:) that push services see.
	VAPIDKeyFile, VAPIDSubject string
	// FCMCredentialsFile is a Google service account key file (JSON) of the Firebase
	// project.
	FCMCredentialsFile string
	// APNsKeyFile is the .p8 signing key from Apple, with its key id, the team id and
	// the app's bundle id; APNsSandbox sends to the development service.
	APNsKeyFile, APNsKeyID, APNsTeamID, APNsTopic string
	APNsSandbox                                   bool
	// WakeInterval is the least time between two wake-ups of one device.
	WakeInterval time.Duration
}

// bindPush registers the push flags on fs, with env defaults.
func bindPush(fs *flag.FlagSet, env func(name, def string) string, c *PushConfig) {
	fs.StringVar(&c.VAPIDKeyFile, "vapid-key-file", env("HERALD_VAPID_KEY_FILE", ""),
		"PEM file of the Web Push VAPID key (P-256); turns Web Push wake-ups on (HERALD_VAPID_KEY_FILE)")
	fs.StringVar(&c.VAPIDSubject, "vapid-subject", env("HERALD_VAPID_SUBJECT", ""),
		"mailto: or https: contact that Web Push services see (HERALD_VAPID_SUBJECT)")
	fs.StringVar(&c.FCMCredentialsFile, "fcm-credentials-file", env("HERALD_FCM_CREDENTIALS_FILE", ""),
		"Firebase service account key file (JSON); turns FCM wake-ups on (HERALD_FCM_CREDENTIALS_FILE)")
	fs.StringVar(&c.APNsKeyFile, "apns-key-file", env("HERALD_APNS_KEY_FILE", ""),
		"APNs signing key (.p8); turns APNs wake-ups on, with --apns-key-id, --apns-team-id, --apns-topic (HERALD_APNS_KEY_FILE)")
	fs.StringVar(&c.APNsKeyID, "apns-key-id", env("HERALD_APNS_KEY_ID", ""), "the APNs key's id (HERALD_APNS_KEY_ID)")
	fs.StringVar(&c.APNsTeamID, "apns-team-id", env("HERALD_APNS_TEAM_ID", ""), "the Apple team id (HERALD_APNS_TEAM_ID)")
	fs.StringVar(&c.APNsTopic, "apns-topic", env("HERALD_APNS_TOPIC", ""), "the app's bundle id (HERALD_APNS_TOPIC)")
	sandbox, _ := strconv.ParseBool(env("HERALD_APNS_SANDBOX", "false")) // checked in parse
	fs.BoolVar(&c.APNsSandbox, "apns-sandbox", sandbox,
		"send to APNs' development service (HERALD_APNS_SANDBOX)")
	wake, err := time.ParseDuration(env("HERALD_WAKE_INTERVAL", "1m"))
	if err != nil {
		wake = time.Minute // reported by parse
	}
	fs.DurationVar(&c.WakeInterval, "wake-interval", wake, "the least time between two wake-ups of one device (HERALD_WAKE_INTERVAL)")
}

// senders builds the push senders the configuration turns on.
func (c PushConfig) senders() (*push.WebPush, *push.FCM, *push.APNs, error) {
	var (
		wp   *push.WebPush
		fcm  *push.FCM
		apns *push.APNs
		errs []error
	)
	if c.VAPIDKeyFile != "" {
		b, err := os.ReadFile(c.VAPIDKeyFile)
		if err == nil {
			k, perr := push.ParseVAPIDKey(b)
			if err = perr; err == nil {
				wp, err = push.NewWebPush(k, c.VAPIDSubject, nil)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("--vapid-key-file: %w", err))
		}
	}
	if c.FCMCredentialsFile != "" {
		b, err := os.ReadFile(c.FCMCredentialsFile)
		if err == nil {
			fcm, err = push.NewFCM(b, "", nil)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("--fcm-credentials-file: %w", err))
		}
	}
	if c.APNsKeyFile != "" {
		b, err := os.ReadFile(c.APNsKeyFile)
		if err == nil {
			base := ""
			if c.APNsSandbox {
				base = "https://api.sandbox.push.apple.com"
			}
			k, perr := push.ParseVAPIDKey(b)
			if err = perr; err == nil {
				apns, err = push.NewAPNs(k, c.APNsKeyID, c.APNsTeamID, c.APNsTopic, base, nil)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("--apns-key-file: %w", err))
		}
	}
	if c.WakeInterval < time.Second {
		errs = append(errs, errors.New("--wake-interval must be at least 1s"))
	}
	return wp, fcm, apns, errors.Join(errs...)
}
