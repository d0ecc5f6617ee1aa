-- Sealed secrets (PostgreSQL): the secret of a token whose kind shows it again (a deployment
-- token's installer command, an onboarding token's QR code where enabled), encrypted with
-- XChaCha20-Poly1305 under a key derived from the pepper. The value is a version byte, the
-- pepper's key id, a random nonce and the ciphertext with its tag; the token id is its
-- associated data. Without the pepper it reveals nothing. NULL for tokens shown only once.
-- Validation does not read it, so the change notification trigger ignores it.
ALTER TABLE tokens ADD COLUMN sealed BYTEA CHECK (sealed IS NULL OR octet_length(sealed) > 45);
