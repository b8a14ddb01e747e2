// Masking of secrets in what is kept or shown (traces, the inspector): a value whose key looks
// like a password, secret, token or credential is replaced. Pure: no IO.

/** Keys such as callboxPassword, numconvertPassword, accessSecret, apiToken, db_pwd. */
export const SECRET_KEY = /pass(word|wd)?|pwd|secret|token|credential|private.?key/i;

export const MASK = '***';

/** A copy of `value` with the values of secret-looking keys masked, at any depth. */
export function maskSecrets(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(maskSecrets);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.entries(value).map(([k, v]) => [
      k,
      SECRET_KEY.test(k) && (typeof v === 'string' || typeof v === 'number')
        ? MASK
        : maskSecrets(v),
    ]),
  );
}
