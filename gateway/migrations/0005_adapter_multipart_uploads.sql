-- R2 multipart upload of large adapter weights: the upload's id while status = 'uploaded'.
ALTER TABLE adapters ADD COLUMN upload_id TEXT;
