"""Material genealogy, lot -> batch -> product lot, traced forward and backward through an
intermediate, and the guards on consuming a lot."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pharma_kit import as_user, signature

if TYPE_CHECKING:
    import httpx
    from ops_kit.testing import InProcess


async def _consume(client: httpx.AsyncClient, batch: str, lot: str, quantity: float) -> int:
    answer = await client.post(
        f"/api/batches/{batch}/consumptions",
        json={"lot_id": lot, "quantity": quantity},
        headers=as_user("olivia"),
    )
    return answer.status_code


async def _release(
    client: httpx.AsyncClient, batch: str, product_lot: str, quantity: float
) -> None:
    answer = await client.post(
        f"/api/batches/{batch}/release",
        json={
            "signature": signature("quinn", "approved"),
            "product_lot": {"lot_id": product_lot, "quantity": quantity, "unit": "pcs"},
        },
        headers=as_user("quinn"),
    )
    assert answer.status_code == 200, answer.text


async def _two_level_genealogy(client: httpx.AsyncClient) -> None:
    """ML-AMOX-2401 + ML-GEL-2402 -> B-1001 -> PL-1001-A (capsules, an intermediate);
    PL-1001-A + ML-FOIL-9 -> B-3001 -> PL-3001-A (blister packs)."""
    foil = {"lot_id": "ML-FOIL-9", "material": "Alu blister foil", "quantity": 500, "unit": "m"}
    assert (await client.post("/api/lots", json=foil, headers=as_user("olivia"))).status_code == 201
    assert await _consume(client, "B-1001", "ML-GEL-2402", 100_000) == 201
    await _release(client, "B-1001", "PL-1001-A", 98_000)
    new = {"batch_id": "B-3001", "product": "Amoxicillin 500 mg blister packs"}
    assert (await client.post("/api/batches", json=new, headers=as_user("sam"))).status_code == 201
    assert await _consume(client, "B-3001", "PL-1001-A", 98_000) == 201
    assert await _consume(client, "B-3001", "ML-FOIL-9", 120) == 201
    await _release(client, "B-3001", "PL-3001-A", 9_800)


async def test_forward_trace_finds_every_product_lot_a_material_lot_went_into(
    in_process: InProcess,
) -> None:
    async with in_process() as client:
        await _two_level_genealogy(client)
        forward = (await client.get("/api/lots/ML-AMOX-2401/trace/forward")).json()
        unrelated = (await client.get("/api/lots/ML-IBU-2403/trace/forward")).json()
    assert forward["direction"] == "forward"
    assert forward["batches"] == ["B-1001", "B-3001"]
    assert [(lot["lot_id"], lot["via_batch"]) for lot in forward["lots"]] == [
        ("PL-1001-A", "B-1001"),
        ("PL-3001-A", "B-3001"),
    ]
    assert unrelated["batches"] == ["B-1003"]
    assert [lot["lot_id"] for lot in unrelated["lots"]] == ["PL-1003-A"]


async def test_backward_trace_finds_every_lot_that_went_into_a_product_lot(
    in_process: InProcess,
) -> None:
    async with in_process() as client:
        await _two_level_genealogy(client)
        backward = (await client.get("/api/lots/PL-3001-A/trace/backward")).json()
        material = (await client.get("/api/lots/ML-FOIL-9/trace/backward")).json()
    assert backward["batches"] == ["B-3001", "B-1001"]
    assert sorted((lot["lot_id"], lot["kind"], lot["via_batch"]) for lot in backward["lots"]) == [
        ("ML-AMOX-2401", "material", "B-1001"),
        ("ML-FOIL-9", "material", "B-3001"),
        ("ML-GEL-2402", "material", "B-1001"),
        ("PL-1001-A", "product", "B-3001"),
    ]
    assert (material["batches"], material["lots"]) == ([], [])  # received, not produced


async def test_consumption_is_guarded(in_process: InProcess) -> None:
    async with in_process() as client:
        too_much = await _consume(client, "B-1001", "ML-AMOX-2401", 25.5)  # 25 of 50 kg left
        unknown_lot = await _consume(client, "B-1001", "ML-NOPE-1", 1)
        released = await _consume(client, "B-1003", "ML-IBU-2403", 1)
        anonymous = await client.post(
            "/api/batches/B-1001/consumptions", json={"lot_id": "ML-AMOX-2401", "quantity": 1}
        )
        exact = await _consume(client, "B-1001", "ML-AMOX-2401", 25)
    assert (too_much, unknown_lot, released, anonymous.status_code) == (409, 404, 409, 401)
    assert exact == 201


async def test_unknown_lot_trace_is_404(in_process: InProcess) -> None:
    async with in_process() as client:
        answer = await client.get("/api/lots/ML-NOPE-1/trace/forward")
    assert (answer.status_code, answer.json()["code"]) == (404, "NOT_FOUND")
