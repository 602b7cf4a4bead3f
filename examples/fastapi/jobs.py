"""The example's job: an async perform, run on the worker's event loop with the app's async engine."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import djctl

from models import Session, User


@djctl.job
@dataclass
class WelcomeEmail:
    user_id: int

    async def perform(self) -> None:
        await asyncio.sleep(0.01)  # stands in for an async mail API call
        async with Session() as session, session.begin():
            user = await session.get(User, self.user_id)
            if user is not None:
                user.welcomed = True
