"""Whether Application Default Credentials can be found (`tpuctl doctor`), without calling
any API: google-auth's own search (GOOGLE_APPLICATION_CREDENTIALS, gcloud's ADC file, the
metadata server on a GCE VM)."""

from __future__ import annotations


def adc_status() -> tuple[bool, str]:
    """(found?, what was found or why not, one line)."""
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        creds, _ = google.auth.default()
    except DefaultCredentialsError as e:
        return False, str(e).splitlines()[0][:200]
    return True, f"Application Default Credentials ({type(creds).__name__})"
