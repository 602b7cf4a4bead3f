"""A FastAPI app that enqueues an async job in the request's own transaction.

    export DJ_DATABASE_URL=sqlite:///signup.sqlite3 DJ_APP=jobs
    uvicorn app:app        # the app
    djctl workoff          # or djctl up: the jobs
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import djctl
from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from jobs import WelcomeEmail
from models import Base, Session, User, engine


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    await asyncio.to_thread(djctl.engine)  # creates or upgrades djctl's tables
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield
    await engine.dispose()


app = FastAPI(lifespan=lifespan)


async def session() -> AsyncIterator[AsyncSession]:
    async with Session() as s:
        yield s


class Signup(BaseModel):
    email: str


@app.post("/signup", status_code=201)
async def signup(form: Signup, db: AsyncSession = Depends(session)) -> dict:
    async with db.begin():
        user = User(email=form.email)
        db.add(user)
        await db.flush()
        job_id = await djctl.aenqueue(WelcomeEmail(user.id), session=db, queue="mail")
        if not form.email.partition("@")[2]:
            # Raised inside the transaction: the user and the job roll back together.
            raise HTTPException(400, f"{form.email!r} is not an email address")
    return {"user": user.id, "job": job_id}


@app.get("/users/{user_id}")
async def show(user_id: int, db: AsyncSession = Depends(session)) -> dict:
    user = await db.get(User, user_id)
    if user is None:
        raise HTTPException(404, "no such user")
    return {"id": user.id, "email": user.email, "welcomed": user.welcomed}


@app.get("/health")
async def health() -> dict:
    return {"ok": True}
