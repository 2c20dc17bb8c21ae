"""The dashboard's pages, pure: the chart's scale and the escaping of what senders wrote."""

import re

from mtasts.servers.dashboard.pages import overview_page, report_page, success_chart


def day(name, ok, failed):
    return {
        "domain": "example.net",
        "day": name,
        "successful": ok,
        "failed": failed,
        "success_rate": ok / (ok + failed) if ok + failed else None,
        "failures": {},
        "reporters": [],
        "mx_hosts": [],
    }


def circles(svg):
    return [float(y) for y in re.findall(r'<circle cx="[\d.]+" cy="([\d.]+)"', svg)]


def test_the_scale_makes_a_small_failure_share_visible():
    svg = success_chart("example.net", [day("2026-11-28", 1000, 0), day("2026-11-29", 997, 3)])
    perfect, worse = circles(svg)
    assert worse - perfect > 20  # pixels: 99.7 % is visibly below 100 %
    assert ">100.0%<" in svg and "<polyline" in svg


def test_a_day_without_sessions_is_no_point_and_an_empty_chart_says_so():
    assert circles(success_chart("example.net", [day("2026-11-28", 0, 0), day("2026-11-29", 5, 0)])) != []
    assert "no sessions reported" in success_chart("example.net", [])


def test_what_senders_wrote_stays_text():
    hostile = '<img src=x onerror="alert(1)">'
    data = {
        "days": [dict(day("2026-11-29", 1, 1), reporters=[hostile], failures={hostile: 1})],
        "latest_failures": [
            {
                "day": "2026-11-29",
                "domain": "example.net",
                "result_type": hostile,
                "sessions": 1,
                "receiving_mx": hostile,
                "organization": hostile,
                "report_id": '"><x',
                "advice": [hostile],
            }
        ],
    }
    reports = [
        {
            "received": 0,
            "report_id": '"><x',
            "organization": hostile,
            "domains": [hostile],
            "successful": 1,
            "failed": 1,
            "status": "ok",
            "reason": hostile,
        }
    ]
    page = overview_page(data, reports, "7d")
    assert "<img" not in page and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
    assert 'href="report/%22%3E%3Cx"' in page
    shown = report_page(
        {
            "report_id": hostile,
            "received": 0,
            "start": 0,
            "end": 0,
            "organization": hostile,
            "deviations": [hostile],
            "raw": hostile,
        },
        [],
    )
    assert "<img" not in shown
