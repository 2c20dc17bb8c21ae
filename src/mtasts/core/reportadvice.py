"""What a TLSRPT failure means for the domain we publish, in the owner's words.

Pure: a failure as the store flattens it (result type, MX host, the policy the reporter
applied) and our own ``[publish]`` entry for the domain in; sentences out. Advice names a
cause only where our publication explains it: an MX host our ``mx`` patterns do not cover,
a reporter still on an older policy, a certificate that expired, the policy host out of
reach; otherwise it says what the result type means (RFC 8460 §4.3).
"""

from __future__ import annotations

from typing import List, Optional, Sequence

from mtasts.core.hostname import MxPattern
from mtasts.core.publication import PublishedDomain, policy_text

# RFC 8460 §4.3: what each result type says happened, for types no finer rule explains.
MEANING = {
    "starttls-not-supported": "{mx} did not offer STARTTLS to this sender: a firewall or proxy that strips it,"
    " or STARTTLS switched off on that host",
    "certificate-host-mismatch": "{mx} presented a certificate that does not name it",
    "certificate-expired": "{mx} presented an expired certificate: renew it",
    "certificate-not-trusted": "{mx} presented a certificate the sender could not chain to a trusted root"
    " (a self-signed certificate, or the intermediate certificate not sent)",
    "validation-failure": "the sender could not validate {mx}'s certificate (see the failure reason code)",
    "tlsa-invalid": "DANE: the TLSA records for {mx} do not match its certificate (a key rollover without new"
    " TLSA records?)",
    "dnssec-invalid": "DANE: the DNSSEC signatures of the domain or of {mx} did not validate",
    "dane-required": "DANE: the sender requires DANE, and {mx} has no usable TLSA records",
    "sts-policy-fetch-error": "the sender could not fetch https://mta-sts.{domain}/.well-known/mta-sts.txt"
    " (`mtasts check {domain}` checks it as senders do)",
    "sts-policy-invalid": "the sender could not parse the policy at https://mta-sts.{domain}/.well-known/mta-sts.txt",
    "sts-webpki-invalid": "the certificate of mta-sts.{domain} was not valid for the sender (expired, untrusted,"
    " or not naming mta-sts.{domain})",
}


def advise(
    domain: str,
    result_type: str,
    mx: str,
    reporter_policy: Sequence[str],
    published: Optional[PublishedDomain],
    policy_cert_expired: bool = False,
) -> List[str]:
    """Advice for one failure of *domain* at MX host *mx*; *reporter_policy*: the policy
    lines the reporter applied (its policy-string); *published*: our [publish] entry."""
    advice: List[str] = []
    if (
        published is not None
        and mx
        and result_type
        in (
            "certificate-host-mismatch",
            "validation-failure",
            "starttls-not-supported",
            "certificate-expired",
            "certificate-not-trusted",
        )
    ):
        uncovered = _not_covered(mx, published.mx)
        if uncovered:
            advice.append(uncovered)
    if published is not None and reporter_policy:
        older = _older_policy(reporter_policy, published)
        if older:
            advice.append(older)
    if (
        published is not None
        and policy_cert_expired
        and result_type in ("sts-policy-fetch-error", "sts-webpki-invalid")
    ):
        advice.append(f"the certificate the publisher serves for mta-sts.{domain} has expired: renew it")
    meaning = MEANING.get(result_type)
    if meaning:
        advice.append(meaning.format(mx=mx or "the MX host", domain=domain))
    else:
        advice.append(f"result type {result_type!r} is not one RFC 8460 defines: see the report")
    return advice


def _not_covered(mx: str, patterns: Sequence[str]) -> str:
    parsed = []
    for text in patterns:
        try:
            parsed.append(MxPattern.parse(text))
        except ValueError:
            continue
    if any(p.matches(mx) for p in parsed):
        return ""
    deeper = [p for p in parsed if p.wildcard and mx.lower().rstrip(".").endswith("." + p.base)]
    if deeper:
        # RFC 8461 §4.1: "*.example.com" covers one label, never two.
        labels = mx.lower().rstrip(".").split(".")
        return (
            f"{mx} is not covered by the published mx patterns: '*.{deeper[0].base}' covers one label only"
            f" (RFC 8461 §4.1); add 'mx: *.{'.'.join(labels[1:])}' or 'mx: {mx}' to [publish.domains]"
        )
    return (
        f"{mx} is not covered by the published mx patterns ({', '.join(p.text for p in parsed)}):"
        " senders that enforce the policy refuse it; add it to mx in [publish.domains]"
    )


def _older_policy(reporter_policy: Sequence[str], published: PublishedDomain) -> str:
    ours = [line.strip() for line in policy_text(published).decode().splitlines() if line.strip()]
    theirs = [line.strip() for line in reporter_policy if line.strip()]
    if sorted(ours) == sorted(theirs):
        return ""
    missing = sorted(set(ours) - set(theirs))
    gone = sorted(set(theirs) - set(ours))
    return (
        "the reporter applied another policy than the one published now"
        f" (it lacks {'; '.join(missing) or 'nothing'}; it had {'; '.join(gone) or 'nothing more'}):"
        " a sender keeps a policy until the _mta-sts id changes or max_age ends, so this failure may"
        " predate your last change"
    )
