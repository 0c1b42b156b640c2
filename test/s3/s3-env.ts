/** The environment S3 tests run packer and the SDK in, whatever this machine's AWS and proxy settings. */

// Credentials through the SDK's default chain (the environment); nothing from this machine's ~/.aws, and no
// instance-metadata lookup (169.254.169.254) when a test leaves credentials out.
export const TEST_ENV: Record<string, string | undefined> = {
  AWS_ACCESS_KEY_ID: 'packer-test',
  AWS_SECRET_ACCESS_KEY: 'packer-test-secret',
  AWS_SESSION_TOKEN: undefined,
  AWS_PROFILE: undefined,
  AWS_REGION: undefined,
  AWS_DEFAULT_REGION: undefined,
  AWS_CONFIG_FILE: '/nonexistent/packer-test/aws-config',
  AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/packer-test/aws-credentials',
  AWS_EC2_METADATA_DISABLED: 'true',
  AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: undefined,
  AWS_CONTAINER_CREDENTIALS_FULL_URI: undefined,
  AWS_WEB_IDENTITY_TOKEN_FILE: undefined,
  AWS_ENDPOINT_URL: undefined,
  AWS_ENDPOINT_URL_S3: undefined,
  AWS_MAX_ATTEMPTS: undefined,
  AWS_CA_BUNDLE: undefined,
  AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
}
export const NO_PROXY_ENV = Object.fromEntries(['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'ALL_PROXY', 'all_proxy', 'NO_PROXY', 'no_proxy'].map((n) => [n, undefined]))

/** Sets environment variables (undefined: unset); returns what undoes it. */
export function setEnv (vars: Record<string, string | undefined>): () => void {
  const before = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]))
  const apply = (v: Record<string, string | undefined>): void => {
    for (const [k, value] of Object.entries(v)) {
      if (value === undefined) delete process.env[k]
      else process.env[k] = value
    }
  }
  apply(vars)
  return () => apply(before)
}
