// Surgical edits of the box's configuration files: settings.ini / configuration.ini (INI),
// the FreeSWITCH gateway XMLs and application.yml. The Python tool rewrote each file through a
// parser-serializer, losing comments, key case and order, and choking on `%` and non-string
// values (W-ERR-3, W-ERR-4). Here every function takes text and returns text in which only the
// values it sets differ: comments, blank lines, key spelling, order, unknown sections and keys,
// line endings (CRLF stays CRLF) and a UTF-8 BOM are kept byte for byte.
//
// Pure text in, text out; the file IO (decoding, atomic write) stays with the caller.
//
// One module per format under config-edit/; this one gathers them for the callers.
export {
  mergeIniText,
  REMOTE_CONF_MAPPING,
  applyRemoteConfig,
  type IniChange,
  type RemoteConfigUpdate,
} from './config-edit/ini.ts';
export {
  FS_CONF_MAPPING,
  gatewayParamsFromConfig,
  setGatewayParams,
  type GatewayName,
  type GatewayParamName,
  type GatewayParams,
} from './config-edit/xml.ts';
export { appYmlValues, injectAppYmlKeys, type AppYmlValues } from './config-edit/yaml.ts';
