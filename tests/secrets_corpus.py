"""Fake but correctly shaped secrets in realistic context, for redaction tests.

`SECRETS` is a list of (text, secret, kind): after `memory.redact.redact(text)` the
`secret` substring must be gone and ``[REDACTED:<kind>]`` present. Any capture path
(remember, hooks, transcript import, export) can push these through and assert the
same. `LOOKALIKES` must come out unchanged.

The secrets are generated from a fixed seed rather than written out, so the repository
holds no literal token that a secret scanner (or push protection) would flag.
"""

from __future__ import annotations

import random
import string

_rng = random.Random(20240611)
_ALNUM = string.ascii_letters + string.digits
_B64 = _ALNUM + "+/"
_B64URL = _ALNUM + "-_"
_HEX = "0123456789abcdef"
_UPPER_ALNUM = string.ascii_uppercase + string.digits


def _fake(alphabet: str, n: int) -> str:
    # Guarantee a digit, an upper- and a lower-case letter where the alphabet has them,
    # as real machine-made tokens almost always do.
    while True:
        s = "".join(_rng.choice(alphabet) for _ in range(n))
        wanted = [str.isdigit, str.islower, str.isupper]
        if all(any(f(c) for c in s) for f in wanted if any(f(c) for c in alphabet)):
            return s


def _pem_body(lines: int) -> str:
    return "\n".join(_fake(_B64, 64) for _ in range(lines))


AWS_ACCESS_KEY = "AKIA" + _fake(_UPPER_ALNUM, 16)
AWS_SESSION_KEY = "ASIA" + _fake(_UPPER_ALNUM, 16)
AWS_SECRET = _fake(_B64, 40)
AWS_SECRET_2 = _fake(_B64, 40)
AWS_SECRET_3 = _fake(_B64, 40)
GH_PAT = "ghp_" + _fake(_ALNUM, 36)
GH_OAUTH = "gho_" + _fake(_ALNUM, 36)
GH_USER = "ghu_" + _fake(_ALNUM, 36)
GH_SERVER = "ghs_" + _fake(_ALNUM, 36)
GH_REFRESH = "ghr_" + _fake(_ALNUM, 36)
GH_FINE = "github_pat_" + _fake(_ALNUM, 22) + "_" + _fake(_ALNUM, 59)
GITLAB = "glpat-" + _fake(_ALNUM + "_-", 20)
GITLAB_2 = "glpat-" + _fake(_ALNUM, 20)
SLACK_BOT = (
    "xoxb-" + _fake(string.digits, 12) + "-" + _fake(string.digits, 13) + "-" + _fake(_ALNUM, 24)
)
SLACK_USER = (
    "xoxp-" + _fake(string.digits, 12) + "-" + _fake(string.digits, 12) + "-" + _fake(_HEX, 32)
)
SLACK_HOOK = "T" + _fake(_UPPER_ALNUM, 8) + "/B" + _fake(_UPPER_ALNUM, 10) + "/" + _fake(_ALNUM, 24)
STRIPE_LIVE = "sk_live_" + _fake(_ALNUM, 24)
STRIPE_RESTRICTED = "rk_live_" + _fake(_ALNUM, 99)
STRIPE_TEST = "sk_test_" + _fake(_ALNUM, 24)
OPENAI_PROJ = "sk-proj-" + _fake(_B64URL, 156)
OPENAI_LEGACY = "sk-" + _fake(_ALNUM, 48)
ANTHROPIC = "sk-ant-api03-" + _fake(_B64URL, 93) + "AA"
ANTHROPIC_2 = "sk-ant-api03-" + _fake(_B64URL, 93) + "AA"
GOOGLE = "AIza" + _fake(_B64URL, 35)
GOOGLE_2 = "AIza" + _fake(_B64URL, 35)
HF = "hf_" + _fake(string.ascii_letters, 34)
HF_2 = "hf_" + _fake(string.ascii_letters, 34)
NPM = "npm_" + _fake(_ALNUM, 36)
PYPI = "pypi-AgEIcHlwaS5vcmc" + _fake(_B64URL, 160)
TWILIO_KEY = "SK" + _fake(_HEX, 32)
SENDGRID = "SG." + _fake(_B64URL, 22) + "." + _fake(_B64URL, 43)
AZURE_KEY = _fake(_B64, 86) + "=="
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    + "eyJzdWIiOiI" + _fake(_B64URL, 60)
    + "." + _fake(_B64URL, 43)
)  # fmt: skip
JWT_2 = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ" + _fake(_B64URL, 80) + "." + _fake(_B64URL, 86)
JWT_3 = "eyJhbGciOiJFUzI1NiJ9.eyJhdWQiOiJ" + _fake(_B64URL, 50) + "." + _fake(_B64URL, 64)
RSA_BODY = _pem_body(4)
OPENSSH_BODY = _pem_body(3)
EC_BODY = _pem_body(2)
PGP_BODY = _pem_body(3)
PKCS8_BODY_LINE = _fake(_B64, 64)
TRUNCATED_BODY = _pem_body(2)
URL_PASSWORD = _fake(_ALNUM, 14)
URL_PASSWORD_2 = _fake(_ALNUM, 12)
URL_PASSWORD_3 = _fake(_ALNUM, 16)
OPAQUE_BEARER = _fake(_ALNUM + "-._~", 40)
LOOSE_BEARER = _fake(_ALNUM, 24)
BASIC = "dXNlcjpzM2NyM3QtcGFzcw=="  # base64("user:s3cr3t-pass")
API_KEY_HEX = _fake(_HEX, 32)
CLIENT_SECRET = _fake(_B64URL, 34)
DJANGO_SECRET = "django-insecure-" + _fake(_ALNUM + "!@#%^&*-_+", 50)
APIKEY_CAMEL = _fake(_ALNUM, 28)
PASSPHRASE = _fake(_ALNUM, 18)

SECRETS: list[tuple[str, str, str]] = [
    # AWS
    (f"aws_access_key_id = {AWS_ACCESS_KEY}", AWS_ACCESS_KEY, "aws_access_key"),
    (
        f"The key {AWS_SESSION_KEY} showed up in the CloudTrail logs, rotate it.",
        AWS_SESSION_KEY,
        "aws_access_key",
    ),
    (f"aws_secret_access_key = {AWS_SECRET}", AWS_SECRET, "aws_secret_key"),
    (f'export AWS_SECRET_ACCESS_KEY="{AWS_SECRET_2}"', AWS_SECRET_2, "aws_secret_key"),
    (
        f'{{"AccessKeyId": "{AWS_SESSION_KEY}", "SecretAccessKey": "{AWS_SECRET_3}"}}',
        AWS_SECRET_3,
        "aws_secret_key",
    ),
    # GitHub
    (f"GITHUB_TOKEN={GH_PAT}", GH_PAT, "github_token"),
    (f'{{"oauth_token": "{GH_OAUTH}", "scope": "repo"}}', GH_OAUTH, "github_token"),
    (f"The app acts as the user with {GH_USER} until it expires.", GH_USER, "github_token"),
    (
        f"git remote set-url origin https://x-access-token:{GH_SERVER}@github.com/acme/api.git",
        GH_SERVER,
        "github_token",
    ),
    (f"refresh_token: {GH_REFRESH}", GH_REFRESH, "github_token"),
    (f"echo {GH_FINE} | gh auth login --with-token", GH_FINE, "github_token"),
    # GitLab
    (f"GITLAB_TOKEN={GITLAB}", GITLAB, "gitlab_token"),
    (
        f'curl --header "PRIVATE-TOKEN: {GITLAB_2}" https://gitlab.example.com/api/v4/projects',
        GITLAB_2,
        "gitlab_token",
    ),
    # Slack
    (f"SLACK_BOT_TOKEN={SLACK_BOT}", SLACK_BOT, "slack_token"),
    (f"I pasted my user token {SLACK_USER} into the bot config.", SLACK_USER, "slack_token"),
    (
        f"Alerts POST to https://hooks.slack.com/services/{SLACK_HOOK} on failure.",
        SLACK_HOOK,
        "slack_webhook",
    ),
    # Stripe
    (f'stripe.api_key = "{STRIPE_LIVE}"', STRIPE_LIVE, "stripe_key"),
    (f"Use the restricted key {STRIPE_RESTRICTED} for reporting.", STRIPE_RESTRICTED, "stripe_key"),
    (f"STRIPE_SECRET_KEY={STRIPE_TEST}", STRIPE_TEST, "stripe_key"),
    # OpenAI / Anthropic
    (f"OPENAI_API_KEY={OPENAI_PROJ}", OPENAI_PROJ, "openai_key"),
    (f'client = OpenAI(api_key="{OPENAI_LEGACY}")', OPENAI_LEGACY, "openai_key"),
    (f"ANTHROPIC_API_KEY={ANTHROPIC}", ANTHROPIC, "anthropic_key"),
    (
        f"Oops, {ANTHROPIC_2} was committed in the notebook; revoked it in the console.",
        ANTHROPIC_2,
        "anthropic_key",
    ),
    # Google
    (f"GOOGLE_MAPS_KEY: {GOOGLE}", GOOGLE, "google_api_key"),
    (
        f"curl 'https://maps.googleapis.com/maps/api/geocode/json?address=x&key={GOOGLE_2}'",
        GOOGLE_2,
        "google_api_key",
    ),
    # Hugging Face, npm, PyPI
    (f"HF_TOKEN={HF}", HF, "huggingface_token"),
    (f"huggingface-cli login --token {HF_2}", HF_2, "huggingface_token"),
    (f"//registry.npmjs.org/:_authToken={NPM}", NPM, "npm_token"),
    (f"[pypi]\n  username = __token__\n  password = {PYPI}\n", PYPI, "pypi_token"),
    # Twilio, SendGrid, Azure
    (f"TWILIO_API_KEY={TWILIO_KEY}", TWILIO_KEY, "twilio_api_key"),
    (f"SENDGRID_API_KEY='{SENDGRID}'", SENDGRID, "sendgrid_key"),
    (
        "AZURE_STORAGE_CONNECTION_STRING=DefaultEndpointsProtocol=https;AccountName=acmelogs;"
        f"AccountKey={AZURE_KEY};EndpointSuffix=core.windows.net",
        AZURE_KEY,
        "azure_account_key",
    ),
    # JWTs
    (f"Cookie: session={JWT}; Path=/; HttpOnly", JWT, "jwt"),
    (f"The id_token {JWT_2} expires after one hour.", JWT_2, "jwt"),
    (f'curl -H "Authorization: Bearer {JWT_3}" https://api.example.com/me', JWT_3, "jwt"),
    # Private keys
    (
        f"-----BEGIN RSA PRIVATE KEY-----\n{RSA_BODY}\n-----END RSA PRIVATE KEY-----\n",
        RSA_BODY,
        "private_key",
    ),
    (
        "Deploy key:\n-----BEGIN OPENSSH PRIVATE KEY-----\n"
        f"{OPENSSH_BODY}\n-----END OPENSSH PRIVATE KEY-----\nadd it to the runner.",
        OPENSSH_BODY,
        "private_key",
    ),
    (
        f"-----BEGIN EC PRIVATE KEY-----\n{EC_BODY}\n-----END EC PRIVATE KEY-----",
        EC_BODY,
        "private_key",
    ),
    (
        f"-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n{PGP_BODY}\n-----END PGP PRIVATE KEY BLOCK-----",
        PGP_BODY,
        "private_key",
    ),
    (
        '{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\\n'
        f'{PKCS8_BODY_LINE}\\n-----END PRIVATE KEY-----\\n", "client_email": "x@y.iam"}}',
        PKCS8_BODY_LINE,
        "private_key",
    ),
    (
        f"pasted half a key:\n-----BEGIN PRIVATE KEY-----\n{TRUNCATED_BODY}\n",
        TRUNCATED_BODY,
        "private_key",
    ),
    # Passwords in URLs
    (
        f"DATABASE_URL=postgres://app:{URL_PASSWORD}@db.internal:5432/app",
        URL_PASSWORD,
        "url_password",
    ),
    (f"Connect with redis://:{URL_PASSWORD_2}@cache:6379/0", URL_PASSWORD_2, "url_password"),
    (
        f"mongodb+srv://admin:{URL_PASSWORD_3}@cluster0.abcde.mongodb.net/prod?retryWrites=true",
        URL_PASSWORD_3,
        "url_password",
    ),
    # Key/value assignments whose name says "secret"
    ("DB_PASSWORD=correct-horse-battery-staple", "correct-horse-battery-staple", "env_assignment"),
    (f'export API_KEY="{API_KEY_HEX}"', API_KEY_HEX, "env_assignment"),
    ("database:\n  user: app\n  password: Tr0ub4dor&3\n", "Tr0ub4dor&3", "env_assignment"),
    (
        f'{{"client_id": "abc", "client_secret": "{CLIENT_SECRET}"}}',
        CLIENT_SECRET,
        "env_assignment",
    ),
    (f"SECRET_KEY = '{DJANGO_SECRET}'", DJANGO_SECRET, "env_assignment"),
    ("mysql -u root --password=Pa55w0rd!x -h db", "Pa55w0rd!x", "env_assignment"),
    ("ACCESS_KEY: k9Xq2Lm8Pz4R\n", "k9Xq2Lm8Pz4R", "env_assignment"),
    ("CREDENTIALS=deploy:hunter2-prod", "deploy:hunter2-prod", "env_assignment"),
    ("AUTH=s3cr3t-v4lue-2024", "s3cr3t-v4lue-2024", "env_assignment"),
    (f'const config = {{ "apiKey": "{APIKEY_CAMEL}" }};', APIKEY_CAMEL, "env_assignment"),
    (f"GPG_PASSPHRASE={PASSPHRASE}", PASSPHRASE, "env_assignment"),
    ("'password' => 'W1nter-is-c0ming',", "W1nter-is-c0ming", "env_assignment"),
    ("PGPASSWORD=$ecret-42x psql -h db", "$ecret-42x", "env_assignment"),
    # Authorization headers
    (f"Authorization: Bearer {OPAQUE_BEARER}", OPAQUE_BEARER, "bearer_token"),
    (f"The service got Bearer {LOOSE_BEARER} from the login call.", LOOSE_BEARER, "bearer_token"),
    (f"proxy sends 'Authorization: Basic {BASIC}' upstream", BASIC, "basic_auth"),
]

# Random-looking or secret-sounding text that must come out byte for byte the same.
LOOKALIKES: list[str] = [
    "Fixed in commit 3f786850e387550fdab836ed7e6dc881de23001b on main.",
    "Bisect points at a94a8fe, reverted by 5e1c309dae.",
    "image digest sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "md5 of the empty file is d41d8cd98f00b204e9800998ecf8427e",
    "request id 123e4567-e89b-12d3-a456-426614174000 failed twice",
    "the blob eyJmb28iOiAiYmFyIn0= decodes to a small JSON config",
    "upgraded lancedb from 0.40.1 to 0.40.2 on Python 3.11.7 (v2.3.0-rc1)",
    "see memory/redact.py, ~/.config/memctl/config.toml and C:\\Users\\dev\\AppData",
    "call tokenize_text() and refreshAccessToken() before password_reset_url is built",
    "the PASSWORD env var is read in config.py",
    "Rotate the API token every 90 days; tokens are stored in the keychain.",
    "Token: we should rotate it before the release.",
    "PASSWORD=",
    "TOKEN=<your token>",
    "API_KEY=${API_KEY}",
    "PGPASSWORD=$DB_PASS psql -h db",
    "password: changeme",
    "GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}",
    "token = os.environ['GITHUB_TOKEN']",
    "def login(user: str, password: str) -> None:",
    "MAX_TOKENS=4096\nPASSWORD_MIN_LENGTH=12\nTOKEN_TTL=3600",
    "client.login(token=token, password=self.password)",
    "api_key = get_api_key()",
    "password: ********",
    "SECRET_KEY=your-secret-key-here",
    "arn:aws:iam::123456789012:role/deploy-bot",
    # Twilio account SIDs identify an account; they are not credentials.
    "Twilio account AC0123456789abcdef0123456789abcdef sends the SMS.",
    "Bearer token authentication is configured in auth.py",
    "The Authorization header carries the session token.",
    "clone https://git@example.com/repo.git or https://example.com:8443/a@b",
    "scikit-learn's sk-means-clustering-algorithm-module is unrelated",
    "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ1xk\n-----END CERTIFICATE-----",
    "if password == expected_password:\n    return True",
    "max_tokens: 512\ntoken_budget: 2000",
    "postgres://user:${DB_PASSWORD}@localhost/app and redis://user:<password>@cache",
]
