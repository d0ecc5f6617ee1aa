-- Sealed secrets (SQLite): the secret of a token whose kind shows it again (a deployment
-- token's installer command, an onboarding token's QR code where enabled), encrypted with
-- XChaCha20-Poly1305 under a key derived from the pepper. The value is a version byte, the
-- pepper's key id, a random nonce and the ciphertext with its tag; the token id is its
-- associated data. Without the pepper it reveals nothing. NULL for tokens shown only once.
ALTER TABLE tokens ADD COLUMN sealed BLOB CHECK (sealed IS NULL OR length(sealed) > 45);
