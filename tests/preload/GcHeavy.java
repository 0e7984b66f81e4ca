// SPDX-License-Identifier: MIT
// GcHeavy.java - a garbage-collection-heavy program for run_preload.sh: a
// seeded stream of short-lived int arrays, a few kept; prints a checksum.
import java.util.*;
public class GcHeavy
{
	public static void main(String[] a)
	{
		long h = 1469598103934665603L;
		List<int[]> keep = new ArrayList<>();
		Random r = new Random(42);
		for (int round = 0; round < 200; round++) {
			List<Object> junk = new ArrayList<>();
			for (int i = 0; i < 20000; i++) {
				int[] x = new int[16 + r.nextInt(64)];
				for (int j = 0; j < x.length; j++)
					x[j] = r.nextInt();
				junk.add(x);
				if (i % 1000 == 0)
					keep.add(x);
			}
			for (Object o : junk) {
				int[] x = (int[])o;
				h = (h ^ x[x.length - 1]) * 1099511628211L;
			}
			if (keep.size() > 2000)
				keep.subList(0, 1000).clear();
		}
		long s = 0;
		for (int[] x : keep)
			s += x[0];
		System.out.println("checksum " + Long.toHexString(h) + " kept " + keep.size() +
				   " sum " + s);
	}
}
