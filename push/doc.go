// Package push sends contentless wake-ups to a device's push service, so that an app
// the phone has put to sleep wakes, opens its Receive stream and fetches what waits.
//
// A wake-up carries nothing: no business, category, count or id. The push service (and
// whoever reads its logs) learns only that something waits for a device, never from
// whom or what. Three services are supported, each over its documented HTTP protocol:
//
//   - Web Push (RFC 8030) with VAPID (RFC 8292): browsers and UnifiedPush
//     distributors. The request is an empty POST to the endpoint the device registered,
//     with a VAPID JWT (ES256) for the endpoint's origin.
//   - Firebase Cloud Messaging, HTTP v1 API: a message with the device's registration
//     token and nothing else, authorised by an OAuth 2.0 access token obtained with a
//     service account's signed JWT (RS256).
//   - Apple Push Notification service, token-based: an HTTP/2 background push
//     ({"aps":{"content-available":1}}) authorised by a provider JWT (ES256).
//
// Every Sender answers ErrGone when the service says the endpoint is no longer valid
// (404 or 410, or APNs' Unregistered), so that the caller removes
// it; any other failure is worth retrying later.
//
// The JWTs are written here rather than with a JOSE library: each is one fixed header
// and a few claims, signed with the standard library, and the three shapes are pinned
// by tests against local servers that verify them as the services do.
package push
