// The token request's signature (an Alibaba-Cloud "POP v1"-style HMAC-SHA1 over the sorted,
// RFC 3986-encoded query), exactly as the deployed tool computes it.
import { createHmac, randomUUID } from 'node:crypto';

/** RFC 3986 encoding: only A-Z a-z 0-9 - _ . ~ stay as they are. */
export function popEncode(value: string): string {
  return encodeURIComponent(value).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

export function canonicalQuery(params: Record<string, string>): string {
  return Object.keys(params)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    .map((k) => `${popEncode(k)}=${popEncode(params[k] as string)}`)
    .join('&');
}

export function popSignature(params: Record<string, string>, accessKeySecret: string): string {
  const stringToSign = `GET&${popEncode('/')}&${popEncode(canonicalQuery(params))}`;
  return createHmac('sha1', `${accessKeySecret}&`).update(stringToSign, 'utf8').digest('base64');
}

/** UTC time as %Y-%m-%dT%H:%M:%SZ (no milliseconds). */
export function popTimestamp(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** The seven query parameters of a token request, signed. */
export function signedTokenQuery(
  accessKeyId: string,
  accessKeySecret: string,
  now: Date,
  nonce: string = randomUUID(),
): Record<string, string> {
  const params: Record<string, string> = {
    AccessKeyId: accessKeyId,
    Format: 'JSON',
    SignatureMethod: 'HMAC-SHA1',
    SignatureNonce: nonce,
    SignatureVersion: '1.0',
    Timestamp: popTimestamp(now),
  };
  return { ...params, Signature: popSignature(params, accessKeySecret) };
}
